"""Row strategies over a time-ordered message stream, streaming with bounded buffers.

Each strategy is a generator `(stream of Msg) -> Row` that emits rows in time order and
only for row times inside its window `[t0, t1)`, so a recording can be cut into windows
converted by separate processes. Messages are decoded lazily: a 200 Hz IMU joined to a
10 Hz camera decodes only the samples a row uses.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kiln.apps.robotics.spec.models import JoinSpec, ResampleStrategy, TriggerStrategy

MAX_PENDING_ROWS = 4096  # trigger rows waiting for a future join sample (nearest policies)


class Msg:
    """One message; `value()` decodes on first use (None if decoding failed)."""

    __slots__ = ("topic", "t", "data", "msgtype", "_decode", "_v", "_done")

    def __init__(self, topic: str, t: int, data: Any, msgtype: str, decode: Callable[[Msg], Any]):
        self.topic, self.t, self.data, self.msgtype = topic, t, data, msgtype
        self._decode, self._v, self._done = decode, None, False

    def value(self) -> Any:
        if not self._done:
            self._v, self._done = self._decode(self), True
            self.data = None  # the decoded object keeps what it needs
        return self._v


@dataclass(frozen=True)
class Interp:
    """A topic value between two samples: before + alpha * (after - before)."""

    before: Msg
    after: Msg
    alpha: float


@dataclass(frozen=True)
class Const:
    """A join's configured default value standing in for a missing sample."""

    value: Any


ZEROS = object()  # a join with missing="zeros": features from it become zeros
DROP = object()


@dataclass
class Row:
    timestamp_ns: int
    topics: dict[str, Any]  # topic -> Msg | Interp | Const | ZEROS; absent = missing


@dataclass
class RowStats:
    dropped: int = 0
    warnings: list[str] = field(default_factory=list)

    def warn(self, msg: str) -> None:
        if len(self.warnings) < 50 and msg not in self.warnings:
            self.warnings.append(msg)


class JoinError(ValueError):
    pass


def _pick(join: JoinSpec, t: int, before: Msg | None, after: Msg | None) -> Msg | None:
    if before is not None and join.staleness_ns is not None and t - before.t > join.staleness_ns:
        before = None
    if join.sync_policy == "last-known-before":
        return before
    cands = [c for c in (before, after) if c is not None]
    if not cands:
        return None
    best = min(cands, key=lambda c: (abs(c.t - t), c.t > t))  # ties go to the earlier sample
    tol = (
        join.tolerance_ns
        if join.tolerance_ns is not None
        else (0 if join.sync_policy == "exact-within-tolerance" else None)
    )
    if tol is not None and abs(best.t - t) > tol:
        return None
    return best


def _fill(join: JoinSpec, t: int, previous: dict[str, Any]) -> Any:
    """What a missing join becomes: a stand-in, None (missing) or DROP."""
    if join.missing == "error":
        raise JoinError(f"no sample of join topic {join.topic} for row at {t} ns")
    if join.missing == "drop":
        return DROP
    if join.missing == "zeros":
        return ZEROS
    if join.missing == "forward_fill" and join.topic in previous:
        return previous[join.topic]
    if join.default_value is not None:
        return Const(join.default_value)
    return None


def trigger_rows(
    stream: Iterable[Msg],
    rs: TriggerStrategy,
    stats: RowStats,
    t0: int | None = None,
    t1: int | None = None,
    seeds: dict[str, Msg] | None = None,
) -> Iterator[Row]:
    joins = {j.topic: j for j in rs.joins if j.topic != rs.trigger_topic}
    last: dict[str, Msg] = dict(seeds or {})
    pending: deque[list[Any]] = deque()  # [t, trigger msg, {topic: before}, {topic: chosen}]
    previous: dict[str, Any] = {}
    lo, hi = t0 if t0 is not None else -(2**63), t1 if t1 is not None else 2**63

    def finish(entry: list[Any], topic: str, after: Msg | None) -> None:
        entry[3][topic] = _pick(joins[topic], entry[0], entry[2].pop(topic), after)

    def emit() -> Iterator[Row]:
        while pending and not pending[0][2]:
            t, trig, _, chosen = pending.popleft()
            row: dict[str, Any] = {rs.trigger_topic: trig}
            drop = False
            for topic, join in joins.items():
                val = chosen.get(topic)
                if val is None:
                    val = _fill(join, t, previous)
                    if val is DROP or (val is None and join.required):
                        drop = True
                        continue
                if val is not None:
                    row[topic] = val
                    if isinstance(val, Msg):
                        previous[topic] = val
            if drop:
                stats.dropped += 1
            else:
                yield Row(t, row)

    for m in stream:
        if m.topic in joins:
            for entry in pending:
                if m.topic in entry[2]:
                    finish(entry, m.topic, m)
            last[m.topic] = m
        now = m.t
        for entry in pending:  # resolve rows that no future sample can improve
            for topic in list(entry[2]):
                j, before, t = joins[topic], entry[2][topic], entry[0]
                tol = (
                    j.tolerance_ns
                    if j.tolerance_ns is not None
                    else (0 if j.sync_policy == "exact-within-tolerance" else None)
                )
                if (tol is not None and now > t + tol) or (before is not None and now - t > t - before.t):
                    finish(entry, topic, None)
        if m.topic == rs.trigger_topic:
            if lo <= m.t < hi:
                entry = [m.t, m, {}, {}]
                for topic, j in joins.items():
                    if j.sync_policy == "last-known-before":
                        entry[3][topic] = _pick(j, m.t, last.get(topic), None)
                    else:
                        entry[2][topic] = last.get(topic)
                pending.append(entry)
                if len(pending) > MAX_PENDING_ROWS:
                    stats.warn("join topics too sparse for the nearest policy; some rows used earlier samples")
                    for topic in list(pending[0][2]):
                        finish(pending[0], topic, None)
            elif m.t >= hi and not pending:
                break
        yield from emit()
    for entry in pending:
        for topic in list(entry[2]):
            finish(entry, topic, None)
    yield from emit()


def per_message_rows(stream: Iterable[Msg], topic: str, t0: int | None = None, t1: int | None = None) -> Iterator[Row]:
    for m in stream:
        if m.topic != topic:
            continue
        if t1 is not None and m.t >= t1:
            break
        if t0 is None or m.t >= t0:
            yield Row(m.t, {topic: m})


def union_rows(stream: Iterable[Msg], t0: int | None = None, t1: int | None = None) -> Iterator[Row]:
    """A row per distinct timestamp holding every message stamped with it (legacy mode)."""
    cur: Row | None = None
    for m in stream:
        if t1 is not None and m.t >= t1:
            break
        if t0 is not None and m.t < t0:
            continue
        if cur is not None and cur.timestamp_ns != m.t:
            yield cur
            cur = None
        if cur is None:
            cur = Row(m.t, {})
        cur.topics.setdefault(m.topic, m)
    if cur is not None:
        yield cur


def grid_origin(rs: ResampleStrategy, first_times: dict[str, int | None]) -> int | None:
    """Grid start: the anchor's first message, else the first message of any topic."""
    if rs.anchor_topic and first_times.get(rs.anchor_topic) is not None:
        return first_times[rs.anchor_topic]
    known = [t for t in (first_times.get(x) for x in rs.topics) if t is not None]
    return min(known) if known else None


def resample_rows(
    stream: Iterable[Msg],
    rs: ResampleStrategy,
    origin: int,
    end: int,
    t0: int | None = None,
    t1: int | None = None,
    seeds: dict[str, Msg] | None = None,
    expected: dict[str, int] | None = None,
) -> Iterator[Row]:
    """Rows on the grid origin + k/freq for grid times in [t0, t1) and <= end.

    `expected` (message counts per topic, when the stream covers the whole recording) lets
    interpolation stop waiting for a topic that has delivered its last sample.
    """
    period = 1e9 / rs.freq_hz
    lo = origin if t0 is None else max(origin, t0)
    hi = end + 1 if t1 is None else min(end + 1, t1)
    k = max(0, int(-(-(lo - origin) // period)))  # first grid index with time >= lo
    topics = set(rs.topics)
    if rs.method == "downsample":
        yield from _downsample(stream, topics, origin, period, k, hi)
    else:
        yield from _interpolate(stream, topics, origin, period, k, hi, seeds or {}, expected)


def _downsample(stream: Iterable[Msg], topics: set[str], origin: int, period: float, k0: int, hi: int) -> Iterator[Row]:
    bucket, held = None, {}
    for m in stream:
        if m.topic not in topics or m.t < origin:
            continue
        b = int((m.t - origin) // period)
        if b < k0:
            continue
        if bucket is not None and b != bucket:
            yield Row(origin + int(round(bucket * period)), held)
            held = {}
        if origin + b * period >= hi:
            return
        bucket = b
        held[m.topic] = m  # keep the last sample of each topic in the bucket
    if bucket is not None and held:
        yield Row(origin + int(round(bucket * period)), held)


def _interpolate(
    stream: Iterable[Msg],
    topics: set[str],
    origin: int,
    period: float,
    k: int,
    hi: int,
    seeds: dict[str, Msg],
    expected: dict[str, int] | None,
) -> Iterator[Row]:
    buf: dict[str, deque[Msg]] = {t: deque([seeds[t]]) if t in seeds else deque() for t in topics}
    left = {t: expected.get(t, 0) for t in topics} if expected is not None else {}
    done = {t for t, n in left.items() if n == 0}  # topics that will deliver nothing more

    def row_at(g: int, final: bool) -> Row | None:
        values: dict[str, Any] = {}
        for topic, q in buf.items():
            while len(q) >= 2 and q[1].t <= g:
                q.popleft()  # keep only the last sample at or before g
            if not q:
                if not (final or topic in done):
                    return None
                continue
            if q[0].t > g:
                continue  # before the topic's first sample: absent
            if q[0].t == g:
                values[topic] = q[0]
            elif len(q) >= 2:
                a, b = q[0], q[1]
                values[topic] = Interp(a, b, (g - a.t) / (b.t - a.t))
            elif not (final or topic in done):
                return None  # the next sample may still come
        return Row(g, values)

    for m in stream:
        if m.topic not in topics:
            continue
        buf[m.topic].append(m)
        if m.topic in left:
            left[m.topic] -= 1
            if left[m.topic] <= 0:
                done.add(m.topic)
        while True:
            g = origin + int(round(k * period))
            if g >= hi or g > m.t:
                break
            if any((not q or q[-1].t <= g) and t not in done for t, q in buf.items()):
                break  # some topic has no sample after g yet
            row = row_at(g, False)
            if row is None:
                break
            yield row
            k += 1
        if origin + int(round(k * period)) >= hi:
            return
    while True:
        g = origin + int(round(k * period))
        if g >= hi:
            return
        row = row_at(g, True)
        if row is not None and row.topics:
            yield row
        elif all(not q or q[-1].t < g for q in buf.values()):
            return
        k += 1
