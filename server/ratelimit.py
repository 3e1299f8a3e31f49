"""Per-connection rate limits: messages (a token bucket with a one-second burst), work (a
budget of CPU milliseconds that may go into debt), and persistent excess."""

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
