"""The worker's Prometheus series, each test on a fresh registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from streams.adapters.metrics import Metrics


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


def test_the_portfolio_front_and_each_usage_partitions_front_are_exported() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.record_portfolio_front(1_706_659_200.0, [1_706_745_600.0, 1_706_659_200.0])
    assert sample(metrics, "churnwatch_portfolio_front_timestamp_seconds") == 1_706_659_200.0
    assert sample(metrics, "churnwatch_usage_front_timestamp_seconds", {"partition": "1"}) == 1_706_659_200.0


def test_a_usage_partition_without_a_front_shows_zero_and_holds_the_portfolio_front_at_zero() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.record_portfolio_front(0.0, [1_706_745_600.0, None])
    assert sample(metrics, "churnwatch_usage_front_timestamp_seconds", {"partition": "1"}) == 0.0
    assert sample(metrics, "churnwatch_portfolio_front_timestamp_seconds") == 0.0
