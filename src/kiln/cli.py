"""`kiln serve | worker | migrate | user ... | jobs ...`."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from kiln.settings import Settings

app = typer.Typer(help="Kiln: one self-hosted service for AI workloads.", no_args_is_help=True)
users_app = typer.Typer(help="Manage user accounts.", no_args_is_help=True)
jobs_app = typer.Typer(help="Inspect and steer jobs.", no_args_is_help=True)
app.add_typer(users_app, name="user")
app.add_typer(jobs_app, name="jobs")
console = Console()
T = TypeVar("T")


def _settings(**overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**values)


def _logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _with_kernel(settings: Settings, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run `fn(kernel)` against the database without starting workers (admin commands)."""
    from kiln.core.kernel import Kernel
    from kiln.core.migrations import upgrade
    from kiln.surfaces import load_job_handlers

    async def main() -> T:
        await asyncio.to_thread(upgrade, settings.resolved_database_url)
        load_job_handlers(settings)
        kernel = Kernel(settings)
        await kernel.start("client")
        try:
            return await fn(kernel)
        finally:
            await kernel.stop()

    return asyncio.run(main())


def _with_kernel_or_exit(fn: Callable[[Any], Awaitable[T]], refusals: type[Exception]) -> T:
    """`_with_kernel` for commands whose refusals (bad role, duplicate email...) exit with 2."""
    try:
        return _with_kernel(_settings(), fn)
    except refusals as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (KILN_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (KILN_PORT).")] = None,
) -> None:
    """Run the HTTP server (migrates the database first; runs jobs in-process when embedded)."""
    import uvicorn

    from kiln.app import create_app

    settings = _settings(host=host, port=port)
    _logging(settings)
    application = create_app(settings, migrate=settings.migrate_on_start)
    uvicorn.run(application, host=settings.host, port=settings.port, log_level=settings.log_level.lower())


@app.command()
def worker(
    name: Annotated[str | None, typer.Option(help="Worker name; slots are NAME/1..N.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Slots (KILN_WORKER_CONCURRENCY).")] = None,
) -> None:
    """Run jobs from the shared broker (distributed mode: PostgreSQL + Redis/RabbitMQ/NATS)."""
    from kiln.core.kernel import Kernel
    from kiln.core.migrations import upgrade
    from kiln.surfaces import load_job_handlers

    settings = _settings(worker_concurrency=concurrency)
    _logging(settings)

    async def main() -> None:
        await asyncio.to_thread(upgrade, settings.resolved_database_url)
        load_job_handlers(settings)
        kernel = Kernel(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, kernel.request_stop)
        await kernel.start("worker", worker_name=name)
        console.print(f"kiln worker: {len(kernel.runner.slot_names)} slots on {settings.broker_url}")
        try:
            await kernel.wait_stopped()
        finally:
            await kernel.stop()

    try:
        asyncio.run(main())
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


@app.command()
def migrate() -> None:
    """Apply database migrations up to the newest."""
    from kiln.core.migrations import upgrade

    settings = _settings()
    upgrade(settings.resolved_database_url)
    console.print("database is up to date")


# ------------------------------------------------------------------------------- users
@users_app.command("create")
def user_create(
    email: str,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    role: Annotated[str, typer.Option(help="user | admin | superadmin")] = "user",
    full_name: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Create a user account."""
    from kiln.core.auth import service
    from kiln.core.auth.passwords import PasswordPolicyError, check_password_policy

    try:
        check_password_policy(password, email=email)
    except PasswordPolicyError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None

    async def run(kernel: Any) -> Any:
        async with kernel.db.session() as session:
            user = await service.create_user(session, email, password, role=role, full_name=full_name)
            await session.commit()
            return user

    user = _with_kernel_or_exit(run, service.AuthServiceError)
    console.print(f"created {user.email} ({user.role}) id={user.id}")


@users_app.command("list")
def user_list() -> None:
    """List user accounts."""
    from kiln.core.auth import service

    async def run(kernel: Any) -> Any:
        async with kernel.db.session() as session:
            return await service.list_users(session)

    result = _with_kernel(_settings(), run)
    users = result[0] if isinstance(result, tuple) else result
    table = Table("id", "email", "role", "active", "created")
    for user in users:
        table.add_row(user.id, user.email, user.role, str(user.is_active), user.created_at.isoformat())
    console.print(table)


@users_app.command("set-role")
def user_set_role(email: str, role: str) -> None:
    """Change a user's role (user < admin < superadmin)."""
    from kiln.core.auth import service

    async def run(kernel: Any) -> Any:
        async with kernel.db.session() as session:
            user = await service.get_user_by_email(session, email)
            if user is None:
                return None
            user = await service.set_role(session, user, role)
            await session.commit()
            return user

    user = _with_kernel_or_exit(run, service.AuthServiceError)
    if user is None:
        console.print(f"[red]no user with email {email}[/red]")
        raise typer.Exit(1)
    console.print(f"{user.email} is now {user.role}")


@users_app.command("token")
def user_token(
    email: str,
    name: Annotated[str, typer.Option(help="What the token is for.")] = "script",
    scope: Annotated[
        str | None, typer.Option(help="Comma-separated surfaces the token opens, e.g. robotics,lora (default: all).")
    ] = None,
) -> None:
    """Create an API token for scripts (shown once; only its hash is stored)."""
    from kiln.core.auth import service

    scopes = scope.split(",") if scope is not None else None
    try:
        service.normalize_scopes(scopes)
    except service.InvalidScope as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None

    async def run(kernel: Any) -> Any:
        async with kernel.db.session() as session:
            user = await service.get_user_by_email(session, email)
            if user is None:
                return None
            _, plaintext = await service.create_api_token(session, user, name, scopes=scopes)
            await session.commit()
            return plaintext

    plaintext = _with_kernel(_settings(), run)
    if plaintext is None:
        console.print(f"[red]no user with email {email}[/red]")
        raise typer.Exit(1)
    print(plaintext)


# ------------------------------------------------------------------------------- jobs
@jobs_app.command("list")
def jobs_list(
    kind: Annotated[str | None, typer.Option()] = None,
    surface: Annotated[str | None, typer.Option()] = None,
    status: Annotated[str | None, typer.Option()] = None,
    owner: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 50,
    offset: Annotated[int, typer.Option()] = 0,
) -> None:
    """List jobs, newest first."""
    from kiln.core.jobs import JobError

    async def run(kernel: Any) -> Any:
        return await kernel.jobs.list(
            kind=kind, surface=surface, status=status, owner_id=owner, limit=limit, offset=offset
        )

    items, total = _with_kernel_or_exit(run, JobError)
    table = Table("id", "kind", "status", "progress", "attempts", "created", title=f"{total} jobs")
    for job in items:
        table.add_row(
            job.id,
            job.kind,
            job.status,
            f"{job.progress:.0%}",
            f"{job.attempts}/{job.max_attempts}",
            job.created_at.isoformat(),
        )
    console.print(table)


@jobs_app.command("show")
def jobs_show(job_id: str) -> None:
    """Show one job as JSON."""
    from kiln.core.jobs import job_to_dict

    async def run(kernel: Any) -> Any:
        return await kernel.jobs.get(job_id)

    job = _with_kernel(_settings(), run)
    if job is None:
        console.print(f"[red]no job {job_id}[/red]")
        raise typer.Exit(1)
    print(json.dumps(job_to_dict(job), indent=2))


def _steer(job_id: str, action: str) -> None:
    from kiln.core.jobs import JobError, JobNotFound

    async def run(kernel: Any) -> Any:
        return await getattr(kernel.jobs, action)(job_id)

    try:
        job = _with_kernel(_settings(), run)
    except JobNotFound:
        console.print(f"[red]no job {job_id}[/red]")
        raise typer.Exit(1) from None
    except JobError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(f"job {job.id}: {job.status}")


@jobs_app.command("cancel")
def jobs_cancel(job_id: str) -> None:
    """Cancel a queued or running job."""
    _steer(job_id, "cancel")


@jobs_app.command("retry")
def jobs_retry(job_id: str) -> None:
    """Queue a failed or cancelled job again."""
    _steer(job_id, "retry")


if __name__ == "__main__":
    app()
