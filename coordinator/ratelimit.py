"""Login attempt limits, per account and per client address, on the `limits` library.

Only failed attempts count, so a script that logs in correctly is never locked out, while a
password guesser is slowed to a handful of tries a minute. The store is in process memory: with
several coordinators each keeps its own count (a shared store arrives with scale-out).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class LoginLimiter:
    def __init__(self, per_account: int, per_address: int) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_account = RateLimitItemPerMinute(per_account)
        self._per_address = RateLimitItemPerMinute(per_address)

    def retry_after(self, account: str, address: str) -> int | None:
        """Seconds to wait when either limit is used up, else None."""
        waits = []
        for item, key in ((self._per_account, account.lower()), (self._per_address, address)):
            if not self._limiter.test(item, "login", key):
                reset = self._limiter.get_window_stats(item, "login", key).reset_time
                waits.append(max(1, math.ceil(reset - time.time())))
        return max(waits) if waits else None

    def failed(self, account: str, address: str) -> None:
        self._limiter.hit(self._per_account, "login", account.lower())
        self._limiter.hit(self._per_address, "login", address)
