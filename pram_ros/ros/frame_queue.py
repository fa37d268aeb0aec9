"""The images waiting for pram_node's localizer (no rclpy here).

The image callback puts each message in; the localization loop takes the next one. While
the localizer tracks, frames are taken in order, so that the track follows every camera
frame (each costs a few ms of optical flow); at most `capacity` wait, and beyond that the
oldest is dropped. While it is lost only the newest is worth relocalizing. Each waiting
frame carries how many camera frames were dropped just before it: the localizer's
`frames_dropped`, which tells continuity whether two processed frames were adjacent.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable


class FrameQueue:
    """Thread-safe; `on_drop` is called once per dropped frame (the health counters)."""

    def __init__(self, capacity: int, on_drop: Callable[[], None]):
        if capacity < 1:
            raise ValueError(f"a frame queue holds at least 1 frame, not {capacity}")
        self.capacity = capacity
        self._on_drop = on_drop
        self._lock = threading.Lock()
        self._waiting: deque[list] = deque()  # [message, frames dropped just before it]

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)

    def put(self, message) -> None:
        with self._lock:
            dropped = 0
            if len(self._waiting) >= self.capacity:
                dropped = self._drop_oldest()
            if self._waiting:
                self._waiting[0][1] += dropped
                dropped = 0
            self._waiting.append([message, dropped])

    def take(self, newest_only: bool = False):
        """-> (message, frames dropped just before it), the oldest waiting one, or with
        `newest_only` the newest (the others are dropped); None when none waits."""
        with self._lock:
            while len(self._waiting) > 1 and newest_only:
                self._waiting[1][1] += self._drop_oldest()
            if not self._waiting:
                return None
            message, dropped = self._waiting.popleft()
            return message, dropped

    def newest(self):
        with self._lock:
            return self._waiting[-1][0] if self._waiting else None

    def clear(self) -> None:
        """Forget every waiting frame (not counted as dropped: nobody will take them)."""
        with self._lock:
            self._waiting.clear()

    def _drop_oldest(self) -> int:
        """Drop the oldest waiting frame; -> the frames it stands for (itself and those dropped before it)."""
        _, dropped_before = self._waiting.popleft()
        self._on_drop()
        return dropped_before + 1
