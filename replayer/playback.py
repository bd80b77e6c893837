"""The playhead: which event is current and what recorded time the player is at.

Kept free of widgets so the rules are plain to test. Playing advances recorded time by the
wall-clock time elapsed times the speed; an idle gap longer than ``IDLE_LIMIT`` is shortened
to ``IDLE_LIMIT`` (as asciinema's ``--idle-time-limit`` does) unless real-time mode is on,
in which case every event appears exactly when it happened, scaled by the speed.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Final

SPEEDS: Final = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
IDLE_LIMIT: Final = 1.0  # recorded seconds


@dataclass
class Playback:
    starts: list[float]  # per event, non-decreasing
    ends: list[float]  # per event: when its last record happened
    commands: list[int]  # indices of command events
    end: float = 0.0
    index: int = 0
    t: float = 0.0
    playing: bool = False
    real_time: bool = False
    speed_index: int = 1
    _count: int = field(init=False)

    @classmethod
    def for_events(
        cls, starts: list[float], ends: list[float], commands: list[int], duration: float
    ) -> Playback:
        # Times come from a monotonic clock; a damaged file could still go backwards, and
        # bisection needs order.
        fixed_starts = running_max(starts)
        fixed_ends = [max(s, e) for s, e in zip(fixed_starts, running_max(ends), strict=True)]
        last = fixed_ends[-1] if fixed_ends else 0.0
        pb = cls(fixed_starts, fixed_ends, commands, end=max(duration, last))
        pb.t = fixed_ends[0] if fixed_ends else 0.0
        return pb

    def __post_init__(self) -> None:
        self._count = len(self.starts)

    @property
    def speed(self) -> float:
        return SPEEDS[self.speed_index]

    @property
    def at_end(self) -> bool:
        return self._count == 0 or (self.index >= self._count - 1 and self.t >= self.end)

    def faster(self) -> None:
        self.speed_index = min(self.speed_index + 1, len(SPEEDS) - 1)

    def slower(self) -> None:
        self.speed_index = max(self.speed_index - 1, 0)

    def toggle(self) -> None:
        """Play or pause; playing from the end starts again from the first event."""
        if self.playing:
            self.playing = False
            return
        if self._count == 0:
            return
        if self.at_end:
            self.index = 0
            self.t = self.starts[0]
        self.playing = True

    def tick(self, elapsed: float) -> bool:
        """Advance by ``elapsed`` wall-clock seconds; True when the current event changed."""
        if not self.playing or self._count == 0:
            return False
        following = self.index + 1
        if (not self.real_time and following < self._count
                and self.starts[following] - self.t > IDLE_LIMIT):
            self.t = self.starts[following] - IDLE_LIMIT
        self.t = min(self.t + max(elapsed, 0.0) * self.speed, self.end)
        before = self.index
        self.index = max(self.index, bisect_right(self.starts, self.t) - 1)
        if self.t >= self.end:
            self.index = self._count - 1
            self.playing = False
        return self.index != before

    def seek_index(self, index: int) -> None:
        if self._count == 0:
            return
        self.index = max(0, min(index, self._count - 1))
        self.t = self.ends[self.index]

    def step(self, delta: int) -> None:
        self.seek_index(self.index + delta)

    def jump(self, t: float) -> None:
        """Go to recorded time ``t`` (clamped to the session); the current event is the last
        one that had started by then."""
        if self._count == 0:
            return
        self.t = max(0.0, min(t, self.end))
        self.index = max(0, bisect_right(self.starts, self.t) - 1)

    def next_command(self) -> bool:
        for i in self.commands:
            if i > self.index:
                self.seek_index(i)
                return True
        return False

    def previous_command(self) -> bool:
        for i in reversed(self.commands):
            if i < self.index:
                self.seek_index(i)
                return True
        return False


def running_max(values: list[float]) -> list[float]:
    """Each value raised to the largest before it: times made non-decreasing."""
    out: list[float] = []
    top = float("-inf")
    for v in values:
        top = max(top, v)
        out.append(top)
    return out


def parse_time(text: str) -> float | None:
    """``90``, ``1:30``, ``1:02:03.5`` → seconds; None when it does not parse.

    A leading ``+``/``-`` parses as a signed number; treating it as relative to the playhead
    is the caller's choice."""
    text = text.strip()
    if not text:
        return None
    parts = text.split(":")
    if len(parts) > 3:
        return None
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        return None
    if not all(math.isfinite(n) for n in numbers):
        return None
    seconds = 0.0
    for n in numbers:
        seconds = seconds * 60 + n
    return seconds
