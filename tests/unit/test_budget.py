"""The in-flight budget: what a worker may hold of requests being read, decoded and scored."""

from __future__ import annotations

import os

import pytest

from tfscoring.batching.budget import InflightBudget
from tfscoring.errors import ServiceUnavailable
from tfscoring.process import sizing

GiB = 1 << 30


def test_requests_are_admitted_up_to_the_budget_and_refused_with_503_beyond():
    budget = InflightBudget(100)
    with budget.reserve(60), budget.reserve(40):
        assert budget.used == 100
        with pytest.raises(ServiceUnavailable) as refused, budget.reserve(1):
            pass
        assert refused.value.headers["Retry-After"]
        assert "MAX_INFLIGHT_BYTES" in refused.value.message
    assert budget.used == 0


def test_a_request_heavier_than_the_whole_budget_goes_alone():
    budget = InflightBudget(100)
    with budget.reserve(150), pytest.raises(ServiceUnavailable), budget.reserve(1):
        pass
    with budget.reserve(1), pytest.raises(ServiceUnavailable), budget.reserve(150):
        pass


def test_a_failed_request_gives_its_share_back():
    budget = InflightBudget(100)
    with pytest.raises(ValueError), budget.reserve(70):
        raise ValueError
    assert budget.used == 0


def test_the_default_budget_keeps_32_maximum_requests_of_2_workers_inside_a_4_gib_replica():
    replica, max_body = 4 * GiB, 64 << 20
    per_worker = sizing.inflight_bytes_per_worker(replica, 2, max_body)
    assert 2 * (sizing.WORKER_BASE_BYTES + per_worker) <= sizing.MEMORY_SHARE * replica
    assert per_worker >= sizing.LARGEST_REQUEST_WEIGHT * max_body  # a maximum-size request always fits alone


def test_a_small_replica_still_admits_one_maximum_request_per_worker():
    assert sizing.inflight_bytes_per_worker(1 * GiB, 4, 64 << 20) == sizing.LARGEST_REQUEST_WEIGHT * (64 << 20)


def test_the_memory_limit_is_at_most_the_machines():
    assert 0 < sizing.memory_limit() <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def test_a_reservation_grows_to_its_request_s_real_cost_or_is_refused_and_keeps_what_it_held():
    budget = InflightBudget(100)
    with budget.reserve(10) as first:
        first.resize(70)  # the header said more: granted while it fits
        assert budget.used == 70
        with budget.reserve(20) as second:
            with pytest.raises(ServiceUnavailable):
                second.resize(40)  # 70 + 40 > 100
            assert budget.used == 90 and second.weight == 20
            second.resize(5)  # less is always granted
            assert budget.used == 75
        first.resize(500)  # alone: any size goes
        assert budget.used == 500
    assert budget.used == 0
