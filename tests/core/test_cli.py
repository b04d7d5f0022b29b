"""The `kiln` command: migrate, users, jobs — run as real subprocesses against both databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tests.core.job_handlers  # noqa: F401
from kiln.core.jobs import CANCELLED, FAILED
from kiln.core.kernel import Kernel
from tests.conftest import make_settings
from tests.core.test_jobs import wait_for_status

ROOT = Path(__file__).resolve().parents[2]


def kiln(home: Path, db_url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
    env.update(
        KILN_HOME=str(home),
        KILN_DATABASE_URL=db_url,
        KILN_APPS="",
        PYTHONPATH=os.pathsep.join((str(ROOT / "src"), str(ROOT))),  # this tree's kiln, not an installed one
        KILN_JOB_MODULES="tests.core.job_handlers",
        COLUMNS="200",
    )
    return subprocess.run(
        [sys.executable, "-m", "kiln.cli", *args],
        env=env,
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_migrate_and_users(tmp_path: Path, db_url: str):
    home = tmp_path / "home"
    assert kiln(home, db_url, "migrate").returncode == 0
    weak = kiln(home, db_url, "user", "create", "ada@example.com", "--password", "short")
    assert weak.returncode == 2 and "password" in weak.stdout.lower()
    made = kiln(home, db_url, "user", "create", "ada@example.com", "--password", "correct-horse-9", "--role", "admin")
    assert made.returncode == 0, made.stdout + made.stderr
    again = kiln(home, db_url, "user", "create", "ADA@example.com", "--password", "correct-horse-9")
    assert again.returncode == 2
    assert kiln(home, db_url, "user", "set-role", "ada@example.com", "superadmin").returncode == 0
    listing = kiln(home, db_url, "user", "list").stdout
    assert "ada@example.com" in listing and "superadmin" in listing
    assert kiln(home, db_url, "user", "set-role", "nobody@example.com", "admin").returncode == 1
    bad_role = kiln(home, db_url, "user", "set-role", "ada@example.com", "emperor")
    assert bad_role.returncode == 2
    token = kiln(home, db_url, "user", "token", "ada@example.com", "--name", "ci").stdout.strip()
    assert token.startswith("kiln_") and len(token) > 30
    assert kiln(home, db_url, "user", "token", "nobody@example.com").returncode == 1


async def test_user_token_scopes(tmp_path: Path, db_url: str):
    from kiln.core.auth import ApiToken, lookup_api_token

    home = tmp_path / "home"
    made = kiln(home, db_url, "user", "create", "bot@example.com", "--password", "correct-horse-9")
    assert made.returncode == 0, made.stdout + made.stderr
    scoped = kiln(home, db_url, "user", "token", "bot@example.com", "--scope", "lora, robotics").stdout.strip()
    everything = kiln(home, db_url, "user", "token", "bot@example.com").stdout.strip()
    unknown = kiln(home, db_url, "user", "token", "bot@example.com", "--scope", "robotics,photos")
    assert unknown.returncode == 2 and "photos" in unknown.stdout
    assert kiln(home, db_url, "user", "token", "bot@example.com", "--scope", ",").returncode == 2
    kernel = Kernel(make_settings(home, db_url))
    await kernel.start("client")
    try:
        async with kernel.db.session() as session:
            found = await lookup_api_token(session, scoped)
            assert found is not None and found[0].scope_set == {"lora", "robotics"}
            found = await lookup_api_token(session, everything)
            assert found is not None and found[0].scope_set is None
            assert isinstance(found[0], ApiToken)
    finally:
        await kernel.stop()


@pytest.fixture
async def failed_job(tmp_path: Path, db_url: str) -> str:
    kernel = Kernel(make_settings(tmp_path / "home", db_url))
    await kernel.start("serve")
    try:
        job = await kernel.jobs.submit("test.broken", {})
        await wait_for_status(kernel, job.id, {FAILED})
        waiting = await kernel.jobs.submit("test.sleep", {"seconds": 0.1})
        await wait_for_status(kernel, waiting.id, {"succeeded"})
        return job.id
    finally:
        await kernel.stop()


async def test_jobs_commands(tmp_path: Path, db_url: str, failed_job: str):
    home = tmp_path / "home"
    listing = kiln(home, db_url, "jobs", "list", "--status", "failed")
    assert listing.returncode == 0 and failed_job in listing.stdout and "1 jobs" in listing.stdout
    assert kiln(home, db_url, "jobs", "list", "--status", "exploded").returncode == 2
    shown = json.loads(kiln(home, db_url, "jobs", "show", failed_job).stdout)
    assert shown["status"] == FAILED and shown["error"] == "the payload makes no sense"
    assert kiln(home, db_url, "jobs", "show", "no-such-job").returncode == 1
    retried = kiln(home, db_url, "jobs", "retry", failed_job)
    assert retried.returncode == 0 and "queued" in retried.stdout
    cancelled = kiln(home, db_url, "jobs", "cancel", failed_job)
    assert cancelled.returncode == 0 and CANCELLED in cancelled.stdout
    assert kiln(home, db_url, "jobs", "cancel", failed_job).returncode == 2
