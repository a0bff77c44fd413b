"""dlib's 128-d face descriptor over aligned 150 px face chips, in worker processes when there
are cores to spare.

dlib's ResNet takes ~80 ms a face on one CPU core and holds the GIL, so threads do not help; it
was the largest cost of the demo's quality pass. The descriptor of a chip cut by
``dlib.get_face_chip(img, shape, 150, 0.25)`` is bit-identical to
``compute_face_descriptor(img, shape)``, so the main process cuts the chips (microseconds) and
the workers, each with its own copy of the model, describe them.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

CHIP_SIZE, CHIP_PADDING = 150, 0.25  # what dlib's compute_face_descriptor(img, shape) cuts itself
MIN_PER_WORKER = 4  # below this a batch is described in-process: the hand-off costs more

_worker_model = None  # the descriptor model inside a worker process


def _load_in_worker(model_path: str) -> None:
    global _worker_model
    import dlib

    _worker_model = dlib.face_recognition_model_v1(model_path)


def _describe_in_worker(chips: list[np.ndarray], num_jitters: int) -> list[np.ndarray]:
    return [np.asarray(_worker_model.compute_face_descriptor(c, num_jitters)) for c in chips]


def default_workers() -> int:
    """The cores this process may use (at most 4: more gains little on a face batch)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


class DescriptorPool:
    """``describe(chips)`` -> (N, 128) float64; ``workers=1`` runs in this process."""

    def __init__(self, model_path: str | Path, workers: int | None = None, num_jitters: int = 0):
        import dlib

        self.model_path, self.num_jitters = str(model_path), int(num_jitters)
        self.workers = default_workers() if workers is None else max(1, int(workers))
        self.model = dlib.face_recognition_model_v1(self.model_path)

    def describe(self, chips: list[np.ndarray]) -> np.ndarray:
        if not chips:
            return np.zeros((0, 128))
        n_parts = min(self.workers, len(chips) // MIN_PER_WORKER)
        if n_parts <= 1:
            return np.stack([np.asarray(self.model.compute_face_descriptor(c, self.num_jitters)) for c in chips])
        parts = [list(p) for p in np.array_split(np.arange(len(chips)), n_parts)]
        futures = [self._executor().submit(_describe_in_worker, [chips[i] for i in p], self.num_jitters) for p in parts]
        return np.stack([d for f in futures for d in f.result()])

    def _executor(self) -> ProcessPoolExecutor:
        return _shared_executor(self.model_path, self.workers)


# One set of workers per (model, size) for the whole process: a run builds several backends
# (each matrix, each test), and a spawned worker takes a second or two to load dlib.
_executors: dict[tuple[str, int], ProcessPoolExecutor] = {}


def _shared_executor(model_path: str, workers: int) -> ProcessPoolExecutor:
    key = (model_path, workers)
    if key not in _executors:
        # spawn, not fork: the parent holds OpenMP/torch threads that a forked child would inherit broken
        ctx = multiprocessing.get_context("spawn")
        _executors[key] = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_load_in_worker,
                                              initargs=(model_path,))
    return _executors[key]


def shutdown_workers() -> None:
    """Stop every descriptor worker (they also stop when the process exits)."""
    while _executors:
        _executors.popitem()[1].shutdown(cancel_futures=True)


def face_chip(img: np.ndarray, shape) -> np.ndarray:
    """The aligned chip dlib's descriptor reads for the landmarks ``shape`` of ``img``."""
    import dlib

    return np.asarray(dlib.get_face_chip(img, shape, CHIP_SIZE, CHIP_PADDING))
