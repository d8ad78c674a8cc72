"""The delivery-latency histogram, cheap enough for once per frame.

Why: ``prometheus_client``'s ``Histogram.observe`` costs ~1.5 µs here (a
lock per bucket and per sum) and the writer observes two stages per frame.
A stage here is a list of bucket counts and a sum (~0.2 µs an observation,
one event loop thread writes them); a collector exposes them as the same
Prometheus histogram (name, ``stage`` label, buckets, ``_sum``, ``_count``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class Stage:
    """One label value's counts; ``observe`` is the only hot-path call."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds


class LatencyHistogram(Collector):
    def __init__(
        self, name: str, documentation: str, stages: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self._name = name
        self._documentation = documentation
        bounds = tuple(sorted(float(b) for b in buckets))
        self.stages = {stage: Stage(bounds) for stage in stages}

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=["stage"])
        for stage, counts in self.stages.items():
            cumulative, total = [], 0
            for bound, count in zip((*counts.bounds, float("inf")), counts.counts, strict=True):
                total += count
                cumulative.append((floatToGoString(bound), float(total)))
            family.add_metric([stage], cumulative, sum_value=counts.sum)
        yield family
