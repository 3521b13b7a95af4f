"""A fixed-rate loop: one timer paces control, and reports overruns and jitter.

Deadlines are absolute (start + k * period), so small delays do not accumulate; after an overrun
the schedule restarts from now instead of bursting to catch up (a burst would send commands
faster than the arm expects).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from headway.errors import HeadwayError


@dataclass
class LoopStats:
    """Timing of a paced loop: periods between ticks and how often the work overran its period."""

    fps: float
    ticks: int
    overruns: int
    mean_period: float  # seconds
    p99_period: float
    max_period: float
    std_period: float
    mean_work: float  # seconds of work per tick (time between a tick and the next wait call)
    p99_work: float

    @property
    def overrun_rate(self) -> float:
        return self.overruns / self.ticks if self.ticks else 0.0

    def as_dict(self) -> dict:
        return {
            "fps": self.fps,
            "ticks": self.ticks,
            "overruns": self.overruns,
            "overrun_rate": self.overrun_rate,
            "mean_period_ms": 1e3 * self.mean_period,
            "p99_period_ms": 1e3 * self.p99_period,
            "max_period_ms": 1e3 * self.max_period,
            "jitter_ms": 1e3 * self.std_period,
            "mean_work_ms": 1e3 * self.mean_work,
            "p99_work_ms": 1e3 * self.p99_work,
        }

    def render(self) -> str:
        return (
            f"{self.fps:g} Hz: period mean {1e3 * self.mean_period:.1f} ms, p99 {1e3 * self.p99_period:.1f} ms "
            f"(target {1e3 / self.fps:.1f} ms), overruns {self.overruns}/{self.ticks} ({self.overrun_rate:.1%})"
        )

    @staticmethod
    def merge(stats: list[LoopStats]) -> LoopStats | None:
        """Combine several loops' stats (weighted by ticks; p99/max are the worst of them)."""
        stats = [s for s in stats if s.ticks]
        if not stats:
            return None
        ticks = sum(s.ticks for s in stats)
        weight = lambda name: sum(getattr(s, name) * s.ticks for s in stats) / ticks  # noqa: E731
        return LoopStats(
            fps=stats[0].fps,
            ticks=ticks,
            overruns=sum(s.overruns for s in stats),
            mean_period=weight("mean_period"),
            p99_period=max(s.p99_period for s in stats),
            max_period=max(s.max_period for s in stats),
            std_period=weight("std_period"),
            mean_work=weight("mean_work"),
            p99_work=max(s.p99_work for s in stats),
        )


class RateLoop:
    """Call `wait()` once per iteration; it sleeps until the next deadline.

    An overrun is an iteration whose work ended after its deadline.
    """

    def __init__(self, fps: float, clock=time.monotonic, sleep=time.sleep) -> None:
        if not fps > 0:
            raise HeadwayError(f"the loop rate must be positive, got {fps} Hz")
        self.fps = float(fps)
        self.period = 1.0 / self.fps
        self._clock, self._sleep = clock, sleep
        self.reset()

    def reset(self) -> None:
        self._deadline: float | None = None
        self._last_tick: float | None = None
        self.periods: list[float] = []
        self.work: list[float] = []
        self.overruns = 0

    def start(self) -> float:
        """Mark the first tick (called implicitly by the first `wait`)."""
        now = self._clock()
        self._last_tick = now
        self._deadline = now + self.period
        return now

    def wait(self) -> float:
        """Sleep until the next tick; return its time."""
        if self._deadline is None:
            self.start()
        now = self._clock()
        self.work.append(now - self._last_tick)
        if now > self._deadline:
            self.overruns += 1
            self._deadline = now  # restart the schedule from now: no catch-up burst
        else:
            self._sleep(self._deadline - now)
            now = self._clock()
        self.periods.append(now - self._last_tick)
        self._last_tick = now
        self._deadline += self.period
        return now

    def stats(self) -> LoopStats:
        periods = np.asarray(self.periods) if self.periods else np.zeros(1)
        work = np.asarray(self.work) if self.work else np.zeros(1)
        return LoopStats(
            fps=self.fps,
            ticks=len(self.periods),
            overruns=self.overruns,
            mean_period=float(periods.mean()),
            p99_period=float(np.percentile(periods, 99)),
            max_period=float(periods.max()),
            std_period=float(periods.std()),
            mean_work=float(work.mean()),
            p99_work=float(np.percentile(work, 99)),
        )
