"""Rate limits: per connection, messages (a token bucket with a one-second burst), work (a
budget of CPU milliseconds that may go into debt) and persistent excess; per client address,
events such as corrections (`AddressLimits`)."""

from __future__ import annotations


class TokenBucket:
    """Allows `rate_per_s` events a second on average and bursts of up to `capacity`."""

    def __init__(self, rate_per_s: float, capacity: float, now: float) -> None:
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self.tokens = capacity
        self.updated = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_s(self, now: float) -> float:
        """Seconds until a token is available."""
        self._refill(now)
        return max(0.0, (1.0 - self.tokens) / self.rate_per_s)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate_per_s)
        self.updated = now


class CostBudget:
    """Allows `ms_per_s` milliseconds of estimated work a second, in bursts of up to `burst_ms`.

    A message is admitted while the budget is not in debt, and its whole cost is then spent,
    so one message dearer than the burst (a picture of `max_pixels`) is still possible: its
    connection then waits until the debt is paid off.
    """

    def __init__(self, ms_per_s: float, burst_ms: float, now: float) -> None:
        self.ms_per_s = ms_per_s
        self.burst_ms = burst_ms
        self.balance_ms = burst_ms
        self.updated = now

    def allows(self, now: float) -> bool:
        """Whether the budget is out of debt."""
        self._refill(now)
        return self.balance_ms >= 0.0

    def spend(self, cost_ms: float, now: float) -> None:
        """Spend the cost of a message, going into debt if need be."""
        self._refill(now)
        self.balance_ms -= cost_ms

    def wait_s(self, now: float) -> float:
        """Seconds until the budget is out of debt."""
        self._refill(now)
        return max(0.0, -self.balance_ms / self.ms_per_s)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.balance_ms = min(self.burst_ms, self.balance_ms + elapsed * self.ms_per_s)
        self.updated = now


class Persistence:
    """How long a connection has kept exceeding its rate, to close one that does not stop.

    A streak starts at a refused message and lasts while refusals follow one another less
    than `quiet_s` apart; a client that merely bursts (a quick flourish of the pen) ends its
    streak by slowing down, one that floods keeps it going.
    """

    def __init__(self, limit_s: float, quiet_s: float) -> None:
        self.limit_s = limit_s
        self.quiet_s = quiet_s
        self.started: float | None = None
        self.last_refused = 0.0

    def refused(self, now: float) -> bool:
        """Record a refused message; returns whether the streak has lasted `limit_s`."""
        if self.started is None or now - self.last_refused > self.quiet_s:
            self.started = now
        self.last_refused = now
        return now - self.started >= self.limit_s


class AddressLimits:
    """A token bucket per client address: `per_minute` events a minute, in bursts of as many.

    Addresses are kept in memory only, never stored. Once `max_addresses` are tracked, those
    whose buckets have refilled (they would allow a full burst anyway) are forgotten.
    """

    def __init__(self, per_minute: int, max_addresses: int = 10_000) -> None:
        self.per_minute = per_minute
        self.max_addresses = max_addresses
        self.buckets: dict[str, TokenBucket] = {}

    def take(self, address: str, now: float) -> bool:
        """Spend one event of the address's allowance if it has one."""
        bucket = self.buckets.get(address)
        if bucket is None:
            if len(self.buckets) >= self.max_addresses:
                self._forget_idle(now)
            bucket = TokenBucket(self.per_minute / 60.0, float(self.per_minute), now)
            self.buckets[address] = bucket
        return bucket.take(now)

    def wait_s(self, address: str, now: float) -> float:
        """Seconds until the address may send again."""
        bucket = self.buckets.get(address)
        return 0.0 if bucket is None else bucket.wait_s(now)

    def _forget_idle(self, now: float) -> None:
        for address, bucket in list(self.buckets.items()):
            if bucket.wait_s(now) == 0.0 and bucket.tokens >= bucket.capacity:
                del self.buckets[address]
        if len(self.buckets) >= self.max_addresses:
            # Every address is busy: forget the oldest half rather than grow without bound.
            for address in list(self.buckets)[: self.max_addresses // 2]:
                del self.buckets[address]
