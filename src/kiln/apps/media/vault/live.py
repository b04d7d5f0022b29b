"""`/api/upload/ws/updates`: the live status WebSocket, with a replay of what a client missed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, WebSocket
from sqlalchemy import select

from kiln.apps.media.deps import AUTH_MESSAGES
from kiln.apps.media.models import UPLOADED, MediaItem, MediaTaskLog
from kiln.apps.media.processing.status import TOPIC, StatusEvent
from kiln.core.auth import AuthError, authenticate_token, surface_of, token_from_request
from kiln.core.events import forward_events

router = APIRouter(tags=["media: vault and upload"])


REPLAY_LIMIT = 500


def parse_since(value: str) -> datetime:
    """`since` as ISO 8601 (naive = UTC) or epoch seconds; ValueError when it is neither."""
    try:
        moment = datetime.fromtimestamp(float(value), UTC)
    except (ValueError, OverflowError, OSError):
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def missed_updates(kernel: Any, user_id: str, since: datetime, base: str = "") -> list[dict[str, Any]]:
    """The caller's status changes after `since` from the task log (the newest REPLAY_LIMIT, oldest first)."""
    async with kernel.db.session() as session:  # closed before the socket starts waiting
        rows = (
            await session.execute(
                select(
                    MediaTaskLog.media_id,
                    MediaTaskLog.status,
                    MediaTaskLog.worker_name,
                    MediaTaskLog.at,
                    MediaItem.address,
                )
                .join(MediaItem, MediaItem.id == MediaTaskLog.media_id)
                .where(MediaItem.user_id == user_id, MediaTaskLog.at > since, MediaTaskLog.status.is_not(None))
                .order_by(MediaTaskLog.at.desc(), MediaTaskLog.id.desc())
                .limit(REPLAY_LIMIT)
            )
        ).all()
    return [
        StatusEvent(
            user_id,
            r.media_id,
            r.status,
            r.worker_name,
            r.at,
            r.address,
            img_url=f"{base}/api/media/{r.media_id}/image" if r.status == UPLOADED else None,
        ).message()
        | {"replayed": True}
        for r in reversed(rows)
    ]


def _key(message: dict[str, Any]) -> tuple[Any, ...]:
    return message.get("media_id"), message.get("status"), message.get("timestamp")


class _SkipReplayed:
    """A subscription that drops live events already sent by the replay."""

    def __init__(self, sub: Any, sent: set[tuple[Any, ...]]) -> None:
        self._sub, self._sent = sub, sent

    async def __aiter__(self) -> AsyncIterator[Any]:
        async for item in self._sub:
            if not (isinstance(item, dict) and _key(item) in self._sent):
                yield item


class _ReplayingBus:
    """The event bus as `forward_events` sees it: subscribe first, then send what was missed.

    Subscribing before reading the log means no update falls between the two; one that is in
    both is sent once.
    """

    def __init__(
        self, events: Any, websocket: WebSocket, replay: Callable[[], Awaitable[list[dict[str, Any]]]]
    ) -> None:
        self._events, self._websocket, self._replay = events, websocket, replay

    @asynccontextmanager
    async def subscribe(self, *prefixes: str, **options: Any) -> AsyncIterator[Any]:
        async with self._events.subscribe(*prefixes, **options) as sub:
            missed = await self._replay()
            for message in missed:
                await self._websocket.send_json(message)
            yield _SkipReplayed(sub, {_key(m) for m in missed})


@router.websocket("/api/upload/ws/updates")
async def status_updates(websocket: WebSocket) -> None:
    """Pushes MEDIA_STATUS_UPDATE messages for the caller's own media; any number of tabs.

    `?since=<ISO 8601 or epoch seconds>` first replays the caller's status changes after that
    moment from the task log (marked `"replayed": true`), so a client that reconnects misses nothing.
    """
    kernel = websocket.app.state.kernel
    base = websocket.scope.get("root_path", "")
    try:
        token = token_from_request(websocket)  # cookie, else ?token= (bearer header also works)
    except Exception:
        token = None
    await websocket.accept()
    if not token:
        await websocket.close(1008, AUTH_MESSAGES["missing_auth"])
        return
    try:
        # Its own short session, closed before streaming: an idle socket holds no DB connection.
        user_id = (await authenticate_token(kernel, token, surface=surface_of(websocket))).user.id
    except AuthError as exc:
        await websocket.close(1008, AUTH_MESSAGES.get(exc.code, exc.detail))
        return
    bus = kernel.events
    since_text = websocket.query_params.get("since")
    if since_text is not None:
        try:
            since = parse_since(since_text)
        except ValueError:
            await websocket.close(1007, "Invalid 'since': use ISO 8601 or epoch seconds")
            return
        bus = _ReplayingBus(kernel.events, websocket, lambda: missed_updates(kernel, user_id, since, base))

    def translate(topic: str, data: dict[str, Any]) -> dict[str, Any] | None:
        if data.get("user_id") != user_id:
            return None
        message = data["message"]
        if base and message.get("img_url", "").startswith("/"):  # the events carry root paths
            message = {**message, "img_url": base + message["img_url"]}
        return message

    await forward_events(websocket, bus, [TOPIC], translate, where=("user_id", user_id))
