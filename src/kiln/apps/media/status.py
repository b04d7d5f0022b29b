"""Status transitions: every change writes a task-log row and publishes a MEDIA_STATUS_UPDATE.

Events are published only after the caller commits (`publish_all`), so a client never hears
about a state the database may still roll back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.media import grid
from kiln.apps.media.models import READY, UPLOADED, MediaItem, MediaTaskLog
from kiln.core.db import utcnow

TOPIC = "media.status"
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
    session: AsyncSession, media_id: str, message: str, *, status: str | None = None,
    worker: str | None = None, action: str = "STATUS_CHANGE", at: datetime | None = None,
) -> None:
    session.add(MediaTaskLog(media_id=media_id, action=action, status=status, message=message,
                             worker_name=worker, at=at or utcnow()))


async def transition(
    session: AsyncSession,
    item: MediaItem,
    status: str,
    *,
    detail: str | None = None,
    worker: str | None = None,
    expect: tuple[str, ...] | None = None,
    values: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> StatusEvent | None:
    """Move `item` to `status` (conditional on `expect` when given), log it, return the event.

    Returns None when the row is gone or no longer in an expected state (deleted meanwhile,
    claimed by someone else): the caller then stops touching it.

    This is the choke point of the map grid: a transition that may enter or leave READY syncs the
    item's grid contribution in the same transaction (a transition whose `expect` excludes READY
    and whose target is not READY cannot change it, and costs nothing extra).
    """
    now = at or utcnow()
    changes = {"status": status, "updated_at": now, **(values or {})}
    stmt = update(MediaItem).where(MediaItem.id == item.id)
    if expect is not None:
        stmt = stmt.where(MediaItem.status.in_(expect))
    result = await session.execute(stmt.values(**changes).execution_options(synchronize_session=False))
    if not result.rowcount:
        return None
    for key, value in changes.items():
        setattr(item, key, value)
    if status == READY or expect is None or READY in expect:
        await grid.sync(session, [item.id])
    add_log(session, item.id, status_message(status, detail), status=status, worker=worker, at=now)
    return StatusEvent(
        user_id=item.user_id, media_id=item.id, status=status, worker=worker, at=now,
        address=item.address,
        img_url=f"/api/media/{item.id}/image" if status == UPLOADED else None,
    )


async def publish_all(events: Any, updates: list[StatusEvent | None]) -> None:
    for event in updates:
        if event is not None:
            await events.publish(TOPIC, {"user_id": event.user_id, "message": event.message()})
