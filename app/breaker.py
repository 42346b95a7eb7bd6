"""Skip a shared dependency that just failed, then probe it one call at a time.

A hung Redis (it accepts connections and never answers) must cost one call its timeout, not
every call: after a failure the dependency is left alone for `retry_s`, then a single call
probes it while the others take their degraded path.
"""

from __future__ import annotations

import time


class Breaker:
    def __init__(self, retry_s: float) -> None:
        self.retry_s = retry_s
        self._down_until = 0.0
        self._probing = False

    def may_try(self) -> bool:
        """Whether this call may use the dependency: it is up, or this call is the one probe."""
        if self._down_until == 0.0:
            return True
        if self._probing or time.monotonic() < self._down_until:
            return False
        self._probing = True
        return True

    def record(self, ok: bool) -> None:
        self._down_until = 0.0 if ok else time.monotonic() + self.retry_s

    def probe_done(self) -> None:
        """The call that may have been the probe is over (answered, failed or cancelled)."""
        self._probing = False
