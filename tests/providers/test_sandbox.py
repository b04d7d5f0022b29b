"""The bubblewrap sandbox: results, limits, escapes refused inside, scratch removed, refusal when
no sandbox can start."""

from __future__ import annotations

import glob
import tempfile
import time

import pytest

from kiln.providers import sandbox
from kiln.providers.sandbox import SandboxSettings, SandboxUnavailable, run_python

pytestmark = pytest.mark.skipif(
    sandbox.bwrap_binary(SandboxSettings(_env_file=None)) is None,
    reason="bubblewrap is not installed (apt-get install -y bubblewrap)",
)


def settings(**kw) -> SandboxSettings:
    return SandboxSettings(_env_file=None, **{"cpu_seconds": 2, "wall_seconds": 3, **kw})


async def test_print_and_result():
    r = await run_python("print(2+3)\nresult = {'sum': 2 + 3}", settings())
    assert r.stdout == "5\n" and r.exit_code == 0 and r.result == {"sum": 5}
    assert r.sandbox == "bubblewrap" and r.error is None and not r.timed_out


async def test_infinite_loop_times_out_within_limit():
    started = time.monotonic()
    r = await run_python("while True: pass", settings())
    assert r.timed_out and r.error == sandbox.TIMEOUT_CODE
    assert time.monotonic() - started < 3 + 2


@pytest.mark.parametrize(
    "code",
    [
        "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)",
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\ns.connect(('127.0.0.1', 5432))",
        "print(open('/etc/shadow').read())",
        "print(open('/etc/passwd').read())",
        "import os\nos.setuid(0)",
    ],
)
async def test_escapes_fail_inside(code):
    r = await run_python(code, settings())
    assert r.exit_code != 0 and r.error == "execution_failed", r
    assert "root:" not in r.stdout


async def test_identity_env_and_filesystem():
    code = (
        "import os\nprint(os.getuid(), os.getgid())\nprint(sorted(os.environ))\n"
        "print(os.path.exists('/etc'), os.path.exists('/home'))\n"
        "open('/tmp/x', 'w').write('ok')\n"
        "try:\n    open('/usr/evil', 'w')\nexcept OSError as e:\n    print('ro', e.errno)"
    )
    r = await run_python(code, settings())
    lines = r.stdout.splitlines()
    assert lines[0] == "65534 65534"
    assert "KILN" not in lines[1] and "DATABASE" not in lines[1]
    assert lines[2] == "False False" and lines[3].startswith("ro")


async def test_limits_memory_file_size_output_and_scratch_removed():
    before = set(glob.glob(tempfile.gettempdir() + "/kiln-sbx-*"))
    r = await run_python("x = bytearray(2 * 1024 ** 3)", settings(memory_mb=256))
    assert r.exit_code != 0 and "MemoryError" in r.stderr
    r = await run_python("open('big', 'wb').write(b'0' * (3 * 1024 * 1024))", settings(file_size_mb=1))
    assert r.exit_code != 0
    r = await run_python("print('y' * 500000)", settings(max_output_bytes=2048))
    assert r.truncated and len(r.stdout) == 2048
    assert set(glob.glob(tempfile.gettempdir() + "/kiln-sbx-*")) == before


async def test_refuses_without_a_sandbox_unless_unsafe_allowed(tmp_path):
    missing = str(tmp_path / "no-bwrap")
    with pytest.raises(SandboxUnavailable):
        await run_python("print(1)", settings(bwrap_path=missing))
    r = await run_python("print(1)", settings(bwrap_path=missing, unsafe_local=True))
    assert r.stdout == "1\n" and r.sandbox == "unsafe_local"
