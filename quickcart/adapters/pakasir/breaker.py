"""The circuit breaker in front of the Pakasir gateway: fail fast while it keeps failing."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

logger = logging.getLogger(__name__)

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Thread-safe breaker: opens after N consecutive failures, half-opens after a cool-down."""

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Configure the threshold, the cool-down in seconds and the injectable monotonic clock."""
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_timeout < 0:
            raise ValueError("reset_timeout must not be negative")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        """Current state; an open breaker whose cool-down has elapsed reads as half-open."""
        with self._lock:
            if self._state == "open" and self._cooled_down():
                return "half_open"
            return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failures counted since the last success."""
        with self._lock:
            return self._failures

    def allow_request(self) -> bool:
        """Whether a call may go out now; in half-open state only one trial call at a time."""
        with self._lock:
            if self._state == "closed":
                return True
            if self._state == "open":
                if not self._cooled_down():
                    return False
                self._state = "half_open"
                self._trial_in_flight = False
            if self._trial_in_flight:
                return False
            self._trial_in_flight = True
            return True

    def record_success(self) -> None:
        """A call reached a healthy gateway: close the breaker and reset the count."""
        with self._lock:
            if self._state != "closed":
                logger.info("pakasir circuit closed")
            self._state = "closed"
            self._failures = 0
            self._trial_in_flight = False

    def record_failure(self) -> None:
        """A call failed transiently: count it, and open (or re-open) the breaker if due."""
        with self._lock:
            self._failures += 1
            self._trial_in_flight = False
            if self._state == "half_open" or self._failures >= self.failure_threshold:
                if self._state != "open":
                    logger.warning(
                        "pakasir circuit opened after %d consecutive failures", self._failures
                    )
                self._state = "open"
                self._opened_at = self._clock()

    def release(self) -> None:
        """Give back a half-open trial slot without judging the gateway (e.g. local error)."""
        with self._lock:
            self._trial_in_flight = False

    def _cooled_down(self) -> bool:
        return self._clock() - self._opened_at >= self.reset_timeout
