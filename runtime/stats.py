"""StageTimer: per-stage timings in preallocated rings, reported as p50/p95 in ms."""

from __future__ import annotations

import time

import numpy as np


class StageTimer:
    """Keeps the last ``capacity`` durations of each named stage (ns, preallocated).

    ``with timer.stage("render"):`` or ``timer.add("render", ns)``. Reading is for reports,
    not for the frame path.
    """

    def __init__(self, stages: tuple[str, ...], capacity: int = 4096) -> None:
        self.stages = stages
        self._ns = {s: np.zeros(capacity, np.int64) for s in stages}
        self._count = dict.fromkeys(stages, 0)
        self._capacity = capacity

    def add(self, stage: str, ns: int) -> None:
        """Record one duration of ``stage`` in nanoseconds."""
        i = self._count[stage]
        self._ns[stage][i % self._capacity] = ns
        self._count[stage] = i + 1

    def time(self, stage: str):
        """Context manager timing its block into ``stage`` (perf_counter_ns)."""
        return _Span(self, stage)

    def count(self, stage: str) -> int:
        return self._count[stage]

    def summary_ms(self, stage: str) -> dict[str, float]:
        """``{"n", "p50", "p95", "mean"}`` of ``stage`` in milliseconds."""
        n = min(self._count[stage], self._capacity)
        if n == 0:
            return {"n": 0, "p50": float("nan"), "p95": float("nan"), "mean": float("nan")}
        v = self._ns[stage][:n] / 1e6
        return {"n": n, "p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "mean": float(v.mean())}


class _Span:
    __slots__ = ("_timer", "_stage", "_t0")

    def __init__(self, timer: StageTimer, stage: str) -> None:
        self._timer, self._stage, self._t0 = timer, stage, 0

    def __enter__(self) -> None:
        self._t0 = time.perf_counter_ns()

    def __exit__(self, *exc) -> None:
        self._timer.add(self._stage, time.perf_counter_ns() - self._t0)
