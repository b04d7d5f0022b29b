"""Status transitions: every change writes a task-log row and publishes a MEDIA_STATUS_UPDATE.

Events are published only after the caller commits (`publish_all`), so a client never hears
about a state the database may still roll back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from kiln.apps.media.map import grid
from kiln.apps.media.map.grid import Db
from kiln.apps.media.models import READY, UPLOADED, MediaItem, MediaTaskLog
from kiln.apps.media.processing.batch import insert_logs
from kiln.core.db import new_id, utcnow

TOPIC = "media.status"
_ITEMS = MediaItem.__table__
MESSAGE_TYPE = "MEDIA_STATUS_UPDATE"


@dataclass(slots=True)
class StatusEvent:
    user_id: str
    media_id: str
    status: str
    worker: str | None
    at: datetime
    address: str | None = None
    img_url: str | None = None

    def message(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": MESSAGE_TYPE,
            "media_id": self.media_id,
            "status": self.status,
            "worker": self.worker,
            "timestamp": self.at.isoformat(),
            "address": self.address,
        }
        if self.img_url is not None:
            body["img_url"] = self.img_url
        return body


def status_message(status: str, detail: str | None = None) -> str:
    return f"Status changed to {status}" + (f" ({detail})" if detail else "")


def add_log(
    session: AsyncSession,
    media_id: str,
    message: str,
    *,
    status: str | None = None,
    worker: str | None = None,
    action: str = "STATUS_CHANGE",
    at: datetime | None = None,
) -> None:
    session.add(
        MediaTaskLog(
            media_id=media_id, action=action, status=status, message=message, worker_name=worker, at=at or utcnow()
        )
    )


async def transition(
    session: Db,
    item: MediaItem,
    status: str,
    *,
    detail: str | None = None,
    worker: str | None = None,
    expect: tuple[str, ...] | None = None,
    values: dict[str, Any] | None = None,
    at: datetime | None = None,
    owner: tuple[str | None, int] | None = None,
) -> StatusEvent | None:
    """Move `item` to `status` (conditional on `expect` when given), log it, return the event.

    Returns None when the row is gone or no longer in an expected state (deleted meanwhile,
    claimed by someone else): the caller then stops touching it.
    """
    events = await transition_through(
        session, item, [(status, detail)], worker=worker, expect=expect, values=values, at=at, owner=owner
    )
    return events[0] if events else None


async def transition_through(
    session: Db,
    item: MediaItem,
    steps: list[tuple[str, str | None]],
    *,
    worker: str | None = None,
    expect: tuple[str, ...] | None = None,
    values: dict[str, Any] | None = None,
    at: datetime | None = None,
    owner: tuple[str | None, int] | None = None,
) -> list[StatusEvent]:
    """Walk `item` through `steps` ((status, detail) pairs) in this transaction: one UPDATE to the
    last status, a log row and an event for every step. Nobody can see the states in between
    (they never commit), so writing them row by row would only cost statements.

    Returns [] when the row is gone or no longer in an expected state, or, with `owner` =
    (job id, attempt), when it no longer belongs to that attempt of that job (a later attempt
    claimed it: the earlier one must not overwrite or fail what the later one does).

    This is the choke point of the map grid: a change that may enter or leave READY syncs the
    item's grid contribution in the same transaction. A change whose `expect` excludes READY had
    no contribution to remove, so it costs nothing extra unless the item now contributes.
    """
    first = at or utcnow()
    # Strictly increasing times: the log is read back ordered by time.
    times = [first + timedelta(microseconds=n) for n in range(len(steps))]
    status = steps[-1][0]
    changes = {"status": status, "updated_at": times[-1], **(values or {})}
    params = {f"v_{key}": value for key, value in changes.items()}
    params["w_id"] = item.id
    if owner is not None:
        params["w_job"], params["w_attempts"] = owner
    result = await session.execute(_update_statement(tuple(changes), expect, owner is not None), params)
    if not result.rowcount:
        return []
    for key, value in changes.items():
        # Written above: mirror it without marking the object dirty (no second UPDATE at flush).
        set_committed_value(item, key, value)
    could_leave = expect is None or READY in expect
    if could_leave or grid.contributes(status, item.has_trash, item.lat, item.lng):
        await grid.sync(session, [item.id])
    logged_steps = [(step, detail, when) for (step, detail), when in zip(steps, times, strict=True)]
    return await logged(session, item, logged_steps, worker=worker)


_UPDATES: dict[tuple[tuple[str, ...], tuple[str, ...] | None, bool], Any] = {}


def _update_statement(keys: tuple[str, ...], expect: tuple[str, ...] | None, owned: bool) -> Any:
    """The conditional UPDATE of one item, built once per shape (columns written, expected states,
    attempt-owned or not) with bound parameters: building the statement and its cache key on every
    transition cost more than executing it."""
    shape = (keys, expect, owned)
    stmt = _UPDATES.get(shape)
    if stmt is None:
        stmt = update(_ITEMS).where(_ITEMS.c.id == bindparam("w_id"))
        if expect is not None:  # the states as fixed parameters: no list expanded per execution
            stmt = stmt.where(
                _ITEMS.c.status.in_(
                    [bindparam(f"w_expect_{n}", state, type_=_ITEMS.c.status.type) for n, state in enumerate(expect)]
                )
            )
        if owned:
            stmt = stmt.where(_ITEMS.c.job_id == bindparam("w_job"), _ITEMS.c.attempts == bindparam("w_attempts"))
        stmt = _UPDATES[shape] = stmt.values({key: bindparam(f"v_{key}", type_=_ITEMS.c[key].type) for key in keys})
    return stmt


def log_row(media_id: str, status: str, detail: str | None, worker: str | None, at: datetime) -> dict[str, Any]:
    """The task-log row of one status change, for a Core insert (`batch.insert_logs`)."""
    return {
        "id": new_id(),
        "media_id": media_id,
        "action": "STATUS_CHANGE",
        "status": status,
        "message": status_message(status, detail),
        "worker_name": worker,
        "at": at,
    }


async def logged(
    session: Db, item: MediaItem, steps: list[tuple[str, str | None, datetime]], *, worker: str | None = None
) -> list[StatusEvent]:
    """The task-log rows and events of status changes ((status, detail, at) triples) the caller
    has just written."""
    # A Core insert (the ORM unit of work would cost more than the rows), executed now or, in a
    # grouped transaction (`batch.run`), together with the other ops' rows.
    await insert_logs(session, [log_row(item.id, status, detail, worker, at) for status, detail, at in steps])
    return [
        StatusEvent(
            user_id=item.user_id,
            media_id=item.id,
            status=status,
            worker=worker,
            at=at,
            address=item.address,
            img_url=f"/api/media/{item.id}/image" if status == UPLOADED else None,
        )
        for status, _detail, at in steps
    ]


async def publish_all(events: Any, updates: list[StatusEvent | None]) -> None:
    for event in updates:
        if event is not None:
            await events.publish(TOPIC, {"user_id": event.user_id, "message": event.message()})
