"""Run untrusted Python in a bubblewrap sandbox.

Each run gets a fresh scratch directory (removed afterwards) mounted as the working directory of a
`bwrap --unshare-all` jail: no network (its own empty network namespace), its own PID/IPC/UTS
namespaces, a new session, a cleared environment, uid/gid 65534, read-only binds of the system
(`/usr`, `/lib*`, `/bin`) and of the Python prefix, a private tmpfs `/tmp`, and no `/etc` at all.
Resource limits (set before exec, inherited by the jail): CPU seconds, address space, file size
and process count; a wall-time limit kills the whole process group; stdout and stderr are read
up to a byte cap (the rest is drained and dropped).

Where bubblewrap cannot start (binary missing, user namespaces refused), `run` raises
`SandboxUnavailable` unless `KILN_SANDBOX_UNSAFE_LOCAL=true`, which runs the code as a plain
isolated-mode subprocess with the same limits (no namespaces: for trusted development only).

Result fields follow the reference sandbox: `stdout`, `stderr`, `result` (the JSON value of a
top-level `result` variable, if the code sets one), `exit_code`, `timed_out`, `error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

TIMEOUT_CODE = "EXEC_TIMEOUT"
MAX_CODE_BYTES = 64 * 1024
MAX_RESULT_BYTES = 64 * 1024
SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
# Runs the user's file, then writes a top-level `result` (if JSON-serialisable) next to it.
RUNNER = """import json, runpy, sys
ns = runpy.run_path("main.py", run_name="__main__")
if "result" in ns:
    try:
        text = json.dumps(ns["result"])
    except (TypeError, ValueError):
        text = json.dumps(repr(ns["result"]))
    with open(".result.json", "w") as fh:
        fh.write(text)
"""


class SandboxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KILN_SANDBOX_", env_file=".env", extra="ignore")

    unsafe_local: bool = Field(
        default=False,
        description="Run python_exec without a sandbox when bubblewrap cannot start (trusted development only).",
    )
    bwrap_path: str | None = Field(default=None, description="bubblewrap binary; default: `bwrap` on PATH.")
    cpu_seconds: int = Field(default=5, ge=1, le=600, description="CPU-time limit of one run.")
    wall_seconds: float = Field(default=10.0, gt=0, le=600, description="Wall-time limit of one run.")
    memory_mb: int = Field(default=512, ge=64, description="Address-space limit of one run (MiB).")
    file_size_mb: int = Field(default=16, ge=1, description="Largest file one run may write (MiB).")
    max_processes: int = Field(default=32, ge=1, description="Process limit of one run (RLIMIT_NPROC).")
    max_output_bytes: int = Field(default=64 * 1024, ge=1024, description="stdout/stderr kept per stream.")


class SandboxUnavailable(Exception):
    """No sandbox can start here (and unsafe local execution is not allowed)."""


@dataclass
class SandboxResult:
    stdout: str
    stderr: str
    exit_code: int | None
    timed_out: bool = False
    result: Any = None
    error: str | None = None
    truncated: bool = False
    duration_ms: float = 0.0
    sandbox: str = "bubblewrap"
    language: str = "python"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("extra")
        return out


_probe_cache: dict[str, bool] = {}


def _python() -> tuple[str, str]:
    """The real interpreter (not a venv's symlink) and the prefix it needs."""
    return os.path.realpath(sys.executable), sys.base_prefix


def bwrap_binary(settings: SandboxSettings) -> str | None:
    return settings.bwrap_path or shutil.which("bwrap")


def _jail_args(bwrap: str, scratch: Path) -> list[str]:
    executable, prefix = _python()
    args = [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--uid",
        "65534",
        "--gid",
        "65534",
    ]
    for path in SYSTEM_DIRS:
        args += ["--ro-bind-try", path, path]
    if not any(prefix == d or prefix.startswith(d + "/") for d in SYSTEM_DIRS):
        args += ["--ro-bind", prefix, prefix]
    args += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--bind",
        str(scratch),
        "/work",
        "--chdir",
        "/work",
        "--setenv",
        "HOME",
        "/work",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        "--setenv",
        "PYTHONDONTWRITEBYTECODE",
        "1",
        "--setenv",
        "LANG",
        "C.UTF-8",
        "--",
    ]
    return args + [executable, "-I", "-c", RUNNER]


def _limits(settings: SandboxSettings):
    def apply() -> None:
        cpu = settings.cpu_seconds
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        memory = settings.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        size = settings.file_size_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_NPROC, (settings.max_processes, settings.max_processes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


async def _read_capped(stream: asyncio.StreamReader | None, cap: int) -> tuple[bytes, bool]:
    if stream is None:
        return b"", False
    kept = bytearray()
    truncated = False
    while chunk := await stream.read(65536):
        room = cap - len(kept)
        if room > 0:
            kept += chunk[:room]
        truncated = truncated or len(chunk) > room
    return bytes(kept), truncated


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _spawn(
    args: list[str], cwd: Path, settings: SandboxSettings, env: dict[str, str] | None
) -> tuple[int | None, bytes, bytes, bool, bool]:
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=str(cwd),
        env=env if env is not None else {},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_limits(settings),
    )
    readers = asyncio.gather(
        _read_capped(proc.stdout, settings.max_output_bytes), _read_capped(proc.stderr, settings.max_output_bytes)
    )
    timed_out = False
    try:
        (out, cut_out), (err, cut_err) = await asyncio.wait_for(asyncio.shield(readers), settings.wall_seconds)
        code = await asyncio.wait_for(proc.wait(), max(0.5, settings.wall_seconds))
    except TimeoutError:
        timed_out = True
        _kill_group(proc)
        (out, cut_out), (err, cut_err) = await readers
        code = await proc.wait()
    except asyncio.CancelledError:
        _kill_group(proc)
        raise
    return code, out, err, cut_out or cut_err, timed_out


async def probe(settings: SandboxSettings) -> bool:
    """True when a bubblewrap jail starts here (checked once per binary)."""
    bwrap = bwrap_binary(settings)
    if bwrap is None:
        return False
    if bwrap not in _probe_cache:
        with tempfile.TemporaryDirectory(prefix="kiln-sbx-probe-") as scratch:
            (Path(scratch) / "main.py").write_text("")
            try:
                code, *_ = await _spawn(_jail_args(bwrap, Path(scratch)), Path(scratch), settings, None)
            except OSError:
                code = None
        _probe_cache[bwrap] = code == 0
    return _probe_cache[bwrap]


async def run_python(code: str, settings: SandboxSettings) -> SandboxResult:
    """Run `code` in the jail (or, when allowed and no jail can start, unsandboxed)."""
    if len(code.encode()) > MAX_CODE_BYTES:
        return SandboxResult(
            "", f"code is larger than {MAX_CODE_BYTES} bytes", None, error="invalid_code", sandbox="none"
        )
    jailed = await probe(settings)
    if not jailed and not settings.unsafe_local:
        raise SandboxUnavailable(
            "bubblewrap cannot start here; set KILN_SANDBOX_UNSAFE_LOCAL=true to run python_exec without a sandbox"
        )
    scratch = Path(tempfile.mkdtemp(prefix="kiln-sbx-"))
    started = time.perf_counter()
    try:
        os.chmod(scratch, 0o777)  # the jail's uid 65534 writes its result here
        (scratch / "main.py").write_text(code)
        if jailed:
            args = _jail_args(bwrap_binary(settings) or "bwrap", scratch)
            env = None
        else:
            args = [_python()[0], "-I", "-c", RUNNER]
            env = {"PATH": "/usr/bin:/bin", "HOME": str(scratch), "PYTHONDONTWRITEBYTECODE": "1"}
        exit_code, out, err, truncated, timed_out = await _spawn(args, scratch, settings, env)
        result_file = scratch / ".result.json"
        value = None
        if not timed_out and result_file.is_file() and result_file.stat().st_size <= MAX_RESULT_BYTES:
            with contextlib.suppress(ValueError, OSError):
                value = json.loads(result_file.read_text())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    cpu_killed = exit_code is not None and exit_code in (-signal.SIGXCPU, -signal.SIGKILL, 128 + signal.SIGXCPU)
    timed_out = timed_out or cpu_killed
    error = TIMEOUT_CODE if timed_out else ("execution_failed" if exit_code else None)
    return SandboxResult(
        out.decode(errors="replace"),
        err.decode(errors="replace"),
        exit_code,
        timed_out=timed_out,
        result=value,
        error=error,
        truncated=truncated,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
        sandbox="bubblewrap" if jailed else "unsafe_local",
    )
