"""Choose the device a worker's session runs on.

Each gunicorn worker is one process owning one TF session pinned to one GPU.
Workers take GPUs round-robin by claiming the lowest free worker slot: an
exclusive lock on a file named after the slot, in a directory shared by the
workers of one server (keyed by the gunicorn master's pid).  A worker that
dies releases its lock with its process, so its replacement takes the same
slot and the same GPU.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import tensorflow as tf

from tfscoring import log
from tfscoring.errors import StartupError
from tfscoring.process import sizing

_held: tuple[Path, int, IO[bytes]] | None = None  # (directory, slot, lock file) kept open for the worker's life


@dataclass(frozen=True)
class Placement:
    gpu_index: int | None  # index among the GPUs visible to TensorFlow; None: CPU
    description: str

    def session_config(self, gpu_memory_limit_mb: int | None = None, threads: int = 0) -> tf.compat.v1.ConfigProto:
        """`threads`: TensorFlow's intra-op threads for the session (0: TensorFlow's own choice)."""
        if self.gpu_index is None:
            return tf.compat.v1.ConfigProto(device_count={"GPU": 0}, intra_op_parallelism_threads=threads)
        gpu_options = tf.compat.v1.GPUOptions(visible_device_list=str(self.gpu_index), allow_growth=True)
        if gpu_memory_limit_mb:  # one virtual device of that size: its allocator refuses more (ResourceExhausted)
            limit = gpu_options.experimental.virtual_devices.add()
            limit.memory_limit_mb.append(float(gpu_memory_limit_mb))
        return tf.compat.v1.ConfigProto(
            gpu_options=gpu_options, allow_soft_placement=True, intra_op_parallelism_threads=threads
        )


def intra_op_threads(tf_num_intraop_threads: int | None, worker_count: int) -> int:
    """TensorFlow's own TF_NUM_INTRAOP_THREADS wins (0: it reads it itself); else each worker's session gets its
    share of the cores, so that the workers do not each spread over all of them."""
    return 0 if tf_num_intraop_threads else sizing.intra_op_threads(sizing.usable_cpus(), worker_count)


def place(require_gpu: bool) -> Placement:
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        if require_gpu:
            raise StartupError(
                "REQUIRE_GPU is set but TensorFlow sees no GPU "
                "(check the NVIDIA driver, `docker run --gpus all`, and that tensorflow[and-cuda] is installed)"
            )
        log.warning("no GPU visible to TensorFlow: worker %d scores on the CPU", os.getpid())
        return Placement(None, "CPU")
    slot = claim_worker_slot()
    index = slot % len(gpus)
    name = tf.config.experimental.get_device_details(gpus[index]).get("device_name", "GPU")
    log.info("worker %d (slot %d) pinned to GPU %d of %d: %s", os.getpid(), slot, index, len(gpus), name)
    return Placement(index, f"GPU {index} ({name})")


def claim_worker_slot(directory: Path | None = None) -> int:
    """Lock the lowest free slot number among this server's workers and return it.

    A process keeps one slot: asking again returns the slot it holds, so every
    session it opens is pinned to the same GPU.
    """
    global _held
    directory = directory or Path(tempfile.gettempdir()) / f"tfscoring-slots-{os.getppid()}"
    if _held is not None and _held[0] == directory:
        return _held[1]
    directory.mkdir(parents=True, exist_ok=True)
    slot = 0
    while True:
        handle = open(directory / f"{slot}.lock", "wb")  # noqa: SIM115 - held open on purpose
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            slot += 1
            continue
        if _held is not None:
            _held[2].close()
        _held = (directory, slot, handle)
        return slot
