"""In-process limiter for failed logins.

Per (account, client address): `max_failures` failures within `window_seconds` lock that pair
out until the oldest failure leaves the window (stops guessing one account's password).

Per client address: after `max_failures_per_client` failures within the window the address
backs off: each further attempt must wait `backoff_base_seconds`, doubling with every further
failure up to `backoff_max_seconds`, after the address's last failure. One address trying many
accounts is slowed to a crawl, but the people behind that address (a NAT, an office) are not
locked out for the whole window; accounts that logged in successfully from that address
recently skip the back-off altogether.

Counting is atomic: `check()` reserves the attempt it allows, and `record_failure()` /
`record_success()` (or `release()`) settle it, so parallel attempts cannot all pass the check
before the first failure is counted. A reservation never settled lapses after
`pending_seconds`. Only failures count; a success clears the pair's failures. State is per
process, which is enough to make online guessing slow; it is not a distributed quota.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

# Failures past the per-address limit that still lengthen its back-off (the delay is capped anyway).
BACKOFF_STEPS = 40
# How long a denied caller is told to wait when the limit is taken by attempts still running.
IN_FLIGHT_RETRY_SECONDS = 1.0


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
        backoff_base_seconds: float = 1.0,
        backoff_max_seconds: float = 60.0,
        known_good_seconds: float = 30 * 24 * 3600,
        pending_seconds: float = 60.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_failures < 1 or window_seconds <= 0:
            raise ValueError("max_failures must be >= 1 and window_seconds > 0")
        if backoff_base_seconds <= 0 or backoff_max_seconds < backoff_base_seconds:
            raise ValueError("need 0 < backoff_base_seconds <= backoff_max_seconds")
        self.max_failures = max_failures
        self.window = window_seconds
        self.max_failures_per_client = max_failures_per_client
        self.backoff_base = backoff_base_seconds
        self.backoff_max = backoff_max_seconds
        self.known_good_seconds = known_good_seconds
        self.pending_seconds = pending_seconds
        self.max_keys = max_keys  # bounds memory when an attacker cycles through many accounts
        self._clock = clock
        self._lock = threading.Lock()
        self._pairs: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._clients: OrderedDict[str, deque[float]] = OrderedDict()
        self._pending_pairs: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._pending_clients: OrderedDict[str, deque[float]] = OrderedDict()
        self._known_good: OrderedDict[tuple[str, str], float] = OrderedDict()

    @staticmethod
    def _account(account: str) -> str:
        return account.strip().lower()

    @staticmethod
    def _trim(store: OrderedDict, key: object, horizon: float) -> deque[float] | None:
        hits = store.get(key)
        if hits is None:
            return None
        while hits and hits[0] <= horizon:
            hits.popleft()
        if not hits:
            del store[key]
            return None
        return hits

    def _live(self, store: OrderedDict, key: object, now: float) -> deque[float] | None:
        return self._trim(store, key, now - self.window)

    def _in_flight(self, store: OrderedDict, key: object, now: float) -> int:
        hits = self._trim(store, key, now - self.pending_seconds)
        return len(hits) if hits is not None else 0

    def _push(self, store: OrderedDict, key: object, now: float, maxlen: int | None) -> None:
        hits = store.get(key)
        if hits is None:
            hits = store[key] = deque(maxlen=maxlen)
        hits.append(now)
        store.move_to_end(key)
        while len(store) > self.max_keys:
            store.popitem(last=False)

    @staticmethod
    def _pop(store: OrderedDict, key: object) -> None:
        hits = store.get(key)
        if hits:
            hits.popleft()
            if not hits:
                del store[key]

    def _known(self, pair: tuple[str, str], now: float) -> bool:
        since = self._known_good.get(pair)
        if since is None:
            return False
        if now - since > self.known_good_seconds:
            del self._known_good[pair]
            return False
        return True

    def _client_wait(self, client: str, pair: tuple[str, str], now: float) -> float:
        """Seconds this address must still back off (0: it may try now)."""
        limit = self.max_failures_per_client
        if limit is None or self._known(pair, now):
            return 0.0
        hits = self._live(self._clients, client, now)
        failures = len(hits) if hits is not None else 0
        in_flight = self._in_flight(self._pending_clients, client, now)
        if failures + in_flight < limit:
            return 0.0
        if in_flight:  # backing off: one attempt at a time
            return IN_FLIGHT_RETRY_SECONDS
        assert hits is not None
        excess = failures - limit  # 0 for the first failure over the limit
        delay = min(self.backoff_max, self.backoff_base * 2 ** min(excess, BACKOFF_STEPS))
        return max(0.0, hits[-1] + delay - now)

    def check(self, account: str, client: str) -> RateLimitDecision:
        """Whether a login attempt for `account` from `client` may proceed now; an allowed attempt
        is reserved until record_failure / record_success / release settles it."""
        now = self._clock()
        pair = (self._account(account), client)
        with self._lock:
            waits = []
            hits = self._live(self._pairs, pair, now)
            failures = len(hits) if hits is not None else 0
            in_flight = self._in_flight(self._pending_pairs, pair, now)
            if failures >= self.max_failures:
                assert hits is not None
                waits.append(hits[len(hits) - self.max_failures] + self.window - now)
            elif failures + in_flight >= self.max_failures:
                waits.append(IN_FLIGHT_RETRY_SECONDS)
            client_wait = self._client_wait(client, pair, now)
            if client_wait > 0:
                waits.append(client_wait)
            if waits:
                return RateLimitDecision(False, max(waits))
            self._push(self._pending_pairs, pair, now, None)
            self._push(self._pending_clients, client, now, None)
        return RateLimitDecision(True)

    def _settle(self, pair: tuple[str, str], client: str) -> None:
        self._pop(self._pending_pairs, pair)
        self._pop(self._pending_clients, client)

    def release(self, account: str, client: str) -> None:
        """Settle a reserved attempt that was neither a failure nor a success (e.g. it errored)."""
        with self._lock:
            self._settle((self._account(account), client), client)

    def record_failure(self, account: str, client: str) -> None:
        now = self._clock()
        pair = (self._account(account), client)
        with self._lock:
            self._settle(pair, client)
            self._live(self._pairs, pair, now)
            self._live(self._clients, client, now)
            # Only the newest `limit` failures decide anything for a pair. An address keeps all of
            # its failures in the window: how far past the limit it is sets its back-off.
            self._push(self._pairs, pair, now, self.max_failures)
            limit = self.max_failures_per_client
            self._push(self._clients, client, now, limit + BACKOFF_STEPS if limit else 1)

    def record_success(self, account: str, client: str) -> None:
        now = self._clock()
        pair = (self._account(account), client)
        with self._lock:
            self._settle(pair, client)
            self._pairs.pop(pair, None)
            self._known_good[pair] = now
            self._known_good.move_to_end(pair)
            while len(self._known_good) > self.max_keys:
                self._known_good.popitem(last=False)

    def prune(self) -> None:
        """Drop windows with no recent failures (memory hygiene for a periodic task)."""
        now = self._clock()
        with self._lock:
            for store in (self._pairs, self._clients):
                for key in list(store):
                    self._live(store, key, now)
            for store in (self._pending_pairs, self._pending_clients):
                for key in list(store):
                    self._in_flight(store, key, now)
            for pair in list(self._known_good):
                self._known(pair, now)
