"""Worker and thread defaults sized to the machine (server/serve.py applies them: tests/http/test_sizing.py)."""

from __future__ import annotations

import os

from tfscoring.process.sizing import (
    MAX_CPU_WORKERS,
    THREADS_PER_WORKER,
    ServerSize,
    default_size,
    intra_op_threads,
    usable_cpus,
    visible_gpus,
)


def test_one_worker_per_core_with_or_without_gpus():
    assert default_size(cpus=2) == ServerSize(workers=2, threads=THREADS_PER_WORKER)  # the how-to's AKS node
    assert default_size(cpus=1).workers == 1
    assert default_size(cpus=64).workers == MAX_CPU_WORKERS  # each worker holds a TensorFlow runtime


def test_workers_are_no_more_than_the_memory_holds_with_one_maximum_request_each():
    GiB = 1 << 30
    assert default_size(cpus=8, memory=4 * GiB).workers == 2  # 2 x (768 MiB + 11 x 64 MiB) <= 3 GiB
    assert default_size(cpus=8, memory=64 * GiB).workers == 8
    assert default_size(cpus=8, memory=1 * GiB).workers == 1  # at least one, whatever the memory


def test_each_worker_gets_its_share_of_the_cores_for_tensorflow():
    assert intra_op_threads(cpus=8, workers=2) == 4
    assert intra_op_threads(cpus=2, workers=4) == 1


def test_cuda_visible_devices_hides_gpus():
    assert visible_gpus("") == 0
    assert visible_gpus("-1") == 0


def test_usable_cpus_is_at_least_one_and_at_most_the_machine():
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)
