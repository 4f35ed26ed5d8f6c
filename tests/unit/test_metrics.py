"""The metrics tally in-process: it writes what prometheus_client's observe would have."""

from __future__ import annotations

from typing import Any


def test_the_tally_writes_what_observe_would_have() -> None:
    """Requests are tallied locally and flushed in batches: the histogram and the counters
    must come out as if each request had been observed."""
    from prometheus_client import CollectorRegistry, Histogram

    from prefork.metrics import DURATION_BUCKETS, Metrics

    metrics = Metrics()  # the default registry, in this (non-multiprocess) test process
    reference = Histogram(
        "reference_seconds", "", buckets=DURATION_BUCKETS, registry=CollectorRegistry()
    )
    durations = [0.0005, 0.001, 0.003, 0.2, 7.5, 500.0, 0.0025]
    for index, seconds in enumerate(durations):
        metrics.request(200 if index % 2 else 503, seconds)
        reference.observe(seconds)
    metrics.flush()
    metrics.flush()  # nothing new: nothing added

    def buckets(histogram: Any) -> list[tuple[str, float]]:
        return [
            (s.labels["le"], s.value)
            for s in histogram.collect()[0].samples
            if s.name.endswith("_bucket")
        ]

    assert buckets(metrics.duration) == buckets(reference)
    assert metrics.duration._sum.get() == reference._sum.get()
    assert metrics.requests.labels("200")._value.get() == 3
    assert metrics.requests.labels("503")._value.get() == 4
