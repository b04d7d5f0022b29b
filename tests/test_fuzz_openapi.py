"""Every operation of the app's own OpenAPI document, fuzzed: no input may cause a 5xx, and
every 422 is answered as the document describes it.

A 5xx other than 500 is accepted where the operation documents it (a 503 "no display / not
configured" is an answer, not a crash).

Whatever surfaces `KILN_APPS` mounts are covered (the operations are read from the running
app's `/openapi.json`). The server is real (uvicorn on loopback, so NUL bytes and odd paths go
through a real HTTP parser) and the caller holds an admin API token, so the fuzzing reaches
past the auth checks. Hypothesis is derandomized: the same cases every run, a stable CI.

Budget: `KILN_FUZZ_EXAMPLES` examples per operation and mode (positive = fits the schema,
negative = does not); the default keeps the whole test well under a minute per database.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase
from schemathesis.generation import GenerationMode

from kiln.app import create_app
from kiln.core.auth import create_api_token, create_user
from kiln.core.kernel import Kernel
from tests.conftest import make_settings

EXAMPLES = int(os.environ.get("KILN_FUZZ_EXAMPLES", "8"))

# Operations not fuzzed, each with its reason. Keep this list short: a new 5xx is fixed, not listed.
SKIPPED = {
    # Walks whatever directory the body names ("/" included); bounding it is the robotics surface's work.
    ("POST", "/assets/scan-directory"),
}
# Run last: they end the caller's session or delete what other operations read.
LAST = {("POST", "/api/auth/logout"), ("DELETE", "/api/vault/all")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_server(tmp_path: Path, db_url: str) -> Iterator[tuple[str, str]]:
    """A real server in a thread; yields its base URL and an admin API token."""
    import asyncio

    settings = make_settings(tmp_path / "home", db_url)

    async def admin_token() -> str:
        kernel = Kernel(settings)
        await kernel.start("client")
        try:
            async with kernel.db.session() as session:
                user = await create_user(session, "fuzz@example.com", "fuzz-password-123", role="admin")
                _, plaintext = await create_api_token(session, user, "fuzz")
                await session.commit()
            return plaintext
        finally:
            await kernel.stop()

    token = asyncio.run(admin_token())
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, migrate=False), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", token
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _fuzz_operation(
    operation, base_url: str, headers: dict[str, str], session: requests.Session, failures: list[str]
) -> None:
    declared = {str(code) for code in operation.definition.raw.get("responses", {})}
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategy = operation.as_strategy(generation_mode=mode)

        @hypothesis.given(case=strategy)
        @hypothesis.settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case) -> None:
            try:
                response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
            except requests.RequestException as exc:  # the server dropped the connection: as bad as a 5xx
                failures.append(
                    f"{operation.method.upper()} {operation.path}: {type(exc).__name__}\n"
                    f"  {case.as_curl_command(headers)}"
                )
                return
            status = response.status_code
            if status >= 500 and (status == 500 or str(status) not in declared):
                failures.append(
                    f"{operation.method.upper()} {operation.path}: {status} "
                    f"{response.text[:200]!r}\n  {case.as_curl_command(headers)}"
                )
            elif status == 422:  # the document must describe the validation errors really answered
                try:
                    operation.validate_response(response)
                except Exception as exc:
                    failures.append(
                        f"{operation.method.upper()} {operation.path}: 422 body not as documented "
                        f"{response.text[:200]!r}: {str(exc)[:300]}"
                    )

        try:
            run()
        except hypothesis.errors.Unsatisfiable:
            pass  # nothing to make invalid (an operation without parameters or body)


# Every operation of every surface, 2 x EXAMPLES cases each: 200-225 s on the quiet 2-core machine
# with today's ~300 operations (it grows with the contracts), so 240 s timed out in a CI run.
@pytest.mark.timeout(600)
def test_no_input_makes_a_server_error(live_server: tuple[str, str]):
    base_url, token = live_server
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    schema.config.update(base_url=base_url)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if (op.method.upper(), op.path) not in SKIPPED]
    operations.sort(key=lambda op: (op.method.upper(), op.path) in LAST)
    assert len(operations) > 10
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    with requests.Session() as session:
        for operation in operations:
            started = time.monotonic()
            _fuzz_operation(operation, base_url, headers, session, failures)
            if os.environ.get("KILN_FUZZ_TIMES"):
                print(f"{time.monotonic() - started:6.2f}s {operation.method.upper()} {operation.path}")
    assert not failures, f"{len(failures)} server errors:\n" + "\n".join(failures[:40])
