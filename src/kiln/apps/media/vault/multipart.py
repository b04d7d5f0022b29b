"""A streaming `multipart/form-data` reader: each file part is handed on while it arrives.

The request body is fed, chunk by chunk, to python-multipart's callback parser; a caller gets
``(FilePart, chunks)`` pairs from ``file_parts`` and pulls a part's bytes from ``chunks``. Nothing
is spooled: at most one request chunk is held, so a 2 GB upload never sits in memory or in a
temp file. Bytes a caller leaves unread (a file it refused part-way, a field it does not want)
are read and dropped before the next part is offered.

Bad requests raise ``MultipartError`` carrying a 4xx status and a message for the client.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from kiln.core.inputs import storable

_PART, _DATA, _END = 0, 1, 2


class MultipartError(Exception):
    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code, self.detail = status_code, detail


@dataclass(frozen=True, slots=True)
class FilePart:
    field: str
    filename: str
    content_type: str | None


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a `multipart/form-data` Content-Type; 415 / 400 otherwise."""
    kind, params = parse_options_header(content_type or "")
    if kind != b"multipart/form-data":
        raise MultipartError(415, "Expected a multipart/form-data body")
    boundary = params.get(b"boundary", b"")
    if not boundary or len(boundary) > 200:
        raise MultipartError(400, "multipart/form-data without a valid boundary")
    return boundary


def _text(value: bytes) -> str:
    return storable(value.decode("utf-8", errors="replace"))


class _Reader:
    """The parser's callbacks append events; readers pop them, feeding the parser when empty."""

    def __init__(self, body: AsyncIterable[bytes], boundary: bytes) -> None:
        self._source = aiter(body)
        self._events: deque[tuple[int, object]] = deque()
        self._headers: dict[bytes, bytes] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._closed = False  # the closing boundary was seen
        self._exhausted = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._headers.clear,
                "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
                "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
                "on_header_end": self._header_end,
                "on_headers_finished": lambda: self._events.append((_PART, dict(self._headers))),
                "on_part_data": lambda data, start, end: self._events.append((_DATA, bytes(data[start:end]))),
                "on_part_end": lambda: self._events.append((_END, None)),
                "on_end": self._end,
            },
        )

    def _header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _end(self) -> None:
        self._closed = True

    async def next_event(self) -> tuple[int, object] | None:
        while not self._events:
            if self._exhausted:
                return None
            try:
                chunk = await anext(self._source)
            except StopAsyncIteration:
                self._exhausted = True
                if not self._closed:
                    raise MultipartError(400, "Malformed multipart body: it ends before the closing boundary") from None
                continue
            try:
                self._parser.write(chunk)
            except MultipartParseError as exc:
                raise MultipartError(400, f"Malformed multipart body: {exc}") from None
        return self._events.popleft()

    async def part_body(self, state: list[bool]) -> AsyncIterator[bytes]:
        """The current part's bytes; sets ``state[0]`` once its end was read."""
        while not state[0]:
            event = await self.next_event()
            if event is None or event[0] == _END:
                state[0] = True
                return
            if event[0] == _DATA and event[1]:
                yield event[1]  # type: ignore[misc]


async def file_parts(
    body: AsyncIterable[bytes], boundary: bytes, fields: Iterable[str]
) -> AsyncIterator[tuple[FilePart, AsyncIterator[bytes]]]:
    """Each file part of the wanted ``fields`` as it begins, with an iterator of its bytes.

    Parts of other fields, parts without a file name (a form's empty file input) and plain
    form values are skipped unread by the caller. The caller must be done with one part's
    iterator before asking for the next part; whatever it left is drained here.
    """
    wanted = set(fields)
    reader = _Reader(body, boundary)
    while (event := await reader.next_event()) is not None:
        if event[0] != _PART:
            continue  # data/end of a skipped part
        headers: dict[bytes, bytes] = event[1]  # type: ignore[assignment]
        disposition, params = parse_options_header(headers.get(b"content-disposition", b""))
        field = _text(params.get(b"name", b""))
        filename = _text(params.get(b"filename", b""))
        if disposition != b"form-data" or field not in wanted or not filename:
            continue
        content_type = _text(headers[b"content-type"]) if b"content-type" in headers else None
        done = [False]
        chunks = reader.part_body(done)
        yield FilePart(field, filename, content_type), chunks
        async for _ in reader.part_body(done):  # drain what the caller did not read
            pass
        await chunks.aclose()
