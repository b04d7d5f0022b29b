"""In-process sliding-window limiter for failed logins.

Two windows: per (account, client address), which stops guessing one account's password,
and a looser one per client address alone, which slows one address trying many accounts.
Only failures count; a success clears the (account, client) window. State is per process,
which is enough to make online guessing slow; it is not a distributed quota.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    allowed: bool
    retry_after: float = 0.0
    """Seconds until one more attempt would be allowed (0 when allowed)."""

    @property
    def retry_after_header(self) -> str:
        """Whole seconds, rounded up, for a `Retry-After` header."""
        return str(max(1, int(-(-self.retry_after // 1))))


class LoginRateLimiter:
    def __init__(
        self,
        *,
        max_failures: int = 5,
        window_seconds: float = 15 * 60,
        max_failures_per_client: int | None = 50,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_failures < 1 or window_seconds <= 0:
            raise ValueError("max_failures must be >= 1 and window_seconds > 0")
        self.max_failures = max_failures
        self.window = window_seconds
        self.max_failures_per_client = max_failures_per_client
        self.max_keys = max_keys  # bounds memory when an attacker cycles through many accounts
        self._clock = clock
        self._lock = threading.Lock()
        self._pairs: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._clients: OrderedDict[str, deque[float]] = OrderedDict()

    @staticmethod
    def _account(account: str) -> str:
        return account.strip().lower()

    def _live(self, store: OrderedDict, key: object, now: float) -> deque[float] | None:
        hits = store.get(key)
        if hits is None:
            return None
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if not hits:
            del store[key]
            return None
        return hits

    def check(self, account: str, client: str) -> RateLimitDecision:
        """Whether a login attempt for `account` from `client` may proceed now."""
        now = self._clock()
        with self._lock:
            waits = []
            hits = self._live(self._pairs, (self._account(account), client), now)
            if hits is not None and len(hits) >= self.max_failures:
                waits.append(hits[len(hits) - self.max_failures] + self.window - now)
            if self.max_failures_per_client is not None:
                hits = self._live(self._clients, client, now)
                if hits is not None and len(hits) >= self.max_failures_per_client:
                    waits.append(hits[len(hits) - self.max_failures_per_client] + self.window - now)
        if waits:
            return RateLimitDecision(False, max(waits))
        return RateLimitDecision(True)

    def record_failure(self, account: str, client: str) -> None:
        now = self._clock()
        with self._lock:
            pair = (self._account(account), client)
            # Only the newest `limit` failures decide anything, so older ones need not be kept.
            for store, key, limit in (
                (self._pairs, pair, self.max_failures),
                (self._clients, client, self.max_failures_per_client or 1),
            ):
                hits = self._live(store, key, now)
                if hits is None:
                    hits = store[key] = deque(maxlen=limit)
                hits.append(now)
                store.move_to_end(key)
                while len(store) > self.max_keys:
                    store.popitem(last=False)

    def record_success(self, account: str, client: str) -> None:
        with self._lock:
            self._pairs.pop((self._account(account), client), None)

    def prune(self) -> None:
        """Drop windows with no recent failures (memory hygiene for a periodic task)."""
        now = self._clock()
        with self._lock:
            for store in (self._pairs, self._clients):
                for key in list(store):
                    self._live(store, key, now)
