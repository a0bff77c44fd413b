"""One matrix across many processes with torch.distributed (``torchrun``, or SLURM around it).

Every rank builds the matrix, takes a disjoint share of the pending shard jobs (clean scoring
per (target, shard), and whole (source, attack, shard) units: generate -> quality -> score, since
the later steps read the unit's adversarial shard) and writes its own shard files into the shared
run folder. Rank 0 waits at a barrier, then merges and renders. Shard boundaries and per-shard
seeds never depend on the number of ranks, so the records and tables are the same at any world
size, and a rerun at any world size resumes from the shards on disk.

The process group only coordinates (barriers and one small broadcast of job names); no tensor
ever crosses it, so it always uses gloo: it needs no CUDA context, has no NCCL watchdog to trip
while ranks wait for one another, and works across nodes. The compute device is separate:
``cuda:LOCAL_RANK`` when CUDA is available and the matrix asks for auto/cuda, else the CPU.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from bench.errors import UserError
from bench.store import write_json

T = TypeVar("T")

# rank 0 waits at the final barrier for the slowest rank; a cell of a paper-scale matrix can
# take hours, and a rank that dies is noticed by torchrun (which tears the job down) anyway
BARRIER_TIMEOUT = timedelta(hours=48)

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE")
# srun without torchrun: the same facts under SLURM's names (MASTER_ADDR/PORT still needed)
_SLURM_VARS = {"RANK": "SLURM_PROCID", "WORLD_SIZE": "SLURM_NTASKS", "LOCAL_RANK": "SLURM_LOCALID"}


def launched_by_torchrun(env: Mapping[str, str] = os.environ) -> bool:
    return all(v in env for v in _TORCHRUN_VARS)


def launch_info(env: Mapping[str, str] = os.environ) -> tuple[int, int, int] | None:
    """(rank, world size, local rank) from torchrun's variables, else SLURM's; None outside both."""
    if launched_by_torchrun(env):
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if all(v in env for v in _SLURM_VARS.values()):
        return tuple(int(env[_SLURM_VARS[k]]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))  # type: ignore
    return None


def share(jobs: Sequence[T], rank: int, world_size: int) -> list[T]:
    """This rank's jobs: round robin over the list, so the shares are disjoint, cover every job
    and differ in size by at most one."""
    return list(jobs[rank::world_size])


def compute_device(preference: str | None, local_rank: int) -> torch.device:
    """``cuda:LOCAL_RANK`` when the matrix allows CUDA and it is there, else the CPU."""
    preference = (preference or "auto").lower()
    wants_cuda = preference.startswith("cuda") or (preference == "auto" and torch.cuda.is_available())
    if not wants_cuda:
        if preference not in ("auto", "cpu"):
            raise UserError(f"device {preference!r} cannot be split across ranks; use auto, cuda or cpu")
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"device {preference!r} requested but CUDA is not available; use --device cpu")
    # modulo: srun binding one GPU per task leaves each rank one visible device (cuda:0), and
    # more ranks than GPUs on a node share them round robin
    return torch.device(f"cuda:{local_rank % torch.cuda.device_count()}")


class Ranks:
    """This process's place in the group, and the few collectives the matrix run needs."""

    def __init__(self, rank: int, world_size: int, local_rank: int):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, requested: bool | None) -> Ranks | None:
        """Join the group when launched by torchrun (or SLURM with ``--distributed``); None when
        this is a plain single-process run. ``requested``: True forces, False refuses, None detects."""
        if requested is False or (requested is None and not launched_by_torchrun()):
            return None
        info = launch_info()
        if info is None:
            raise UserError("--distributed needs a launcher: run under torchrun (sets RANK, WORLD_SIZE) "
                            "or srun (SLURM_PROCID, SLURM_NTASKS); see docs/cluster.md")
        rank, world_size, local_rank = info
        for var in ("MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise UserError(f"--distributed: {var} is not set; export it (the address/port of rank 0) "
                                "or launch with torchrun")
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(local_rank))
        if not dist.is_initialized():
            dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=BARRIER_TIMEOUT)
        return cls(rank, world_size, local_rank)

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def main_first(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on rank 0, then on the others: for work that writes shared files (prepare
        hooks, crop caches, the run folder). If rank 0 fails the others stop with its message
        instead of waiting for it forever."""
        if self.is_main:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                self.broadcast(f"{exc}")
                raise
            self.broadcast(None)
            return result
        error = self.broadcast(None)
        if error is not None:
            raise UserError(f"rank 0 failed: {error}")
        return fn(*args, **kwargs)

    def execute(self, run) -> bool:
        """Compute this rank's share of the pending shards of ``run`` (a ``bench.runner.MatrixRun``);
        on rank 0 then wait for every rank and write the merged records. True on rank 0."""
        if run.finished():  # nothing to compute or merge (a re-render)
            return self.is_main
        if self.is_main:  # damaged or foreign shards are removed before anyone plans
            run.heal()
        # rank 0 lists what is left; no rank writes a shard before it has this list, so every
        # rank partitions the same list
        pending = self.broadcast([name for name, _ in run.plan(pending_only=True)])
        mine = share(pending, self.rank, self.world_size)
        wanted = set(mine)
        run.work([(name, job) for name, job in run.plan() if name in wanted])
        self.log(run.store, mine, str(run.built.device))
        self.barrier()
        if self.is_main:
            run.write_merged()
        return self.is_main

    def log(self, store, jobs: list[str], device: str) -> None:
        """``ranks/rankN.json`` in the run folder: which host, device and jobs this rank ran last
        (to tell which rank did what on a cluster)."""
        write_json(store.root / "ranks" / f"rank{self.rank}.json",
                   {"rank": self.rank, "world_size": self.world_size, "host": socket.gethostname(),
                    "device": device, "jobs": jobs})
