"""pram_node's frame counters and its health verdict for /diagnostics (no rclpy here).

In: one call per event (`received`, `dropped`, `rejected`, `processed`) with a monotonic
time in seconds. Out: the counters for ~/status and a `Verdict` (level, message) for
/diagnostics: OK while localized; WARN while LOST, when no images arrive, when frames
arrive but are rejected, or when none was processed for `stall_warn_s`; ERROR when
frames are processed but none localized for `lost_error_s`. Each message says why.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from pram_ros.localization.result import Reason

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels


@dataclass(frozen=True)
class Verdict:
    level: int
    message: str


@dataclass
class Counts:
    received: int = 0
    processed: int = 0  # localized or tried (LOST with a reason)
    dropped: int = 0  # never taken: more waited than the queue holds, or lost and a newer came
    rejected: int = 0  # could not be used at all (undecodable, wrong camera)
    localized: int = 0


class Health:
    """Thread-safe: the image callback and the localization loop both report here."""

    def __init__(self, image_topic: str, stall_warn_s: float, lost_error_s: float, now_s: float):
        self.image_topic = image_topic
        self.stall_warn_s = stall_warn_s
        self.lost_error_s = lost_error_s
        self.counts = Counts()
        self._lock = threading.Lock()
        self._started_s = now_s
        self._received_s: float | None = None
        self._processed_s: float | None = None
        self._localized_s: float | None = None
        self._rejected_s: float | None = None
        self._last_state = "UNINITIALIZED"
        self._last_reason = ""
        self._last_rejection = ""

    def received(self, now_s: float) -> None:
        with self._lock:
            self.counts.received += 1
            self._received_s = now_s

    def dropped(self) -> None:
        with self._lock:
            self.counts.dropped += 1

    def rejected(self, reason: Reason, message: str, now_s: float) -> None:
        """A frame that could not be used; it is still answered on ~/status."""
        with self._lock:
            self.counts.rejected += 1
            self._rejected_s = now_s
            self._last_rejection = f"{reason.name}: {message}"

    def processed(self, state: str, localized: bool, reason: Reason, message: str, now_s: float) -> None:
        """A frame the localizer answered."""
        with self._lock:
            self.counts.processed += 1
            self._processed_s = now_s
            self._last_state = state
            self._last_reason = "" if localized else f"{reason.name}: {message}"
            if localized:
                self.counts.localized += 1
                self._localized_s = now_s

    def snapshot(self) -> Counts:
        with self._lock:
            return Counts(**vars(self.counts))

    def verdict(self, now_s: float) -> Verdict:
        with self._lock:
            return self._verdict(now_s)

    def _verdict(self, now_s: float) -> Verdict:
        topic = self.image_topic
        if self._received_s is None:
            return Verdict(WARN, f"no images on {topic} for {now_s - self._started_s:.0f} s")
        if now_s - self._received_s >= self.stall_warn_s:
            return Verdict(WARN, f"no images on {topic} for {now_s - self._received_s:.0f} s")
        recently_rejected = self._rejected_s is not None and now_s - self._rejected_s < self.stall_warn_s
        last_used = max(s for s in (self._processed_s, self._started_s) if s is not None)
        if now_s - last_used >= self.stall_warn_s:
            if recently_rejected:
                return Verdict(WARN, f"images arrive but are rejected: {self._last_rejection}")
            return Verdict(WARN, f"images arrive but none was processed for {now_s - last_used:.0f} s")
        since_localized = now_s - (self._localized_s if self._localized_s is not None else self._started_s)
        if self._processed_s is not None and since_localized >= self.lost_error_s:
            return Verdict(ERROR, f"not localized for {since_localized:.0f} s: {self._last_reason}")
        if self._last_reason:
            return Verdict(WARN, f"{self._last_state}: {self._last_reason}")
        if recently_rejected:
            return Verdict(WARN, f"some images rejected: {self._last_rejection}")
        return Verdict(OK, self._last_state)
