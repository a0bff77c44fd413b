"""One `bench run` per run folder at a time.

Two processes running the same matrix into the same --out would compute every shard twice and
race on the merge. The first takes an exclusive ``flock`` on ``OUT/.locks/<matrix>.<run-id>.lock``
(outside the run folder, so ``--fresh`` deleting the folder does not delete the lock, and outside
``OUT/<matrix>/``, which holds run folders only); a second one exits with one line naming the holder. The kernel releases the lock when its holder exits,
however it exits, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from bench.errors import UserError


@contextlib.contextmanager
def run_folder_lock(run_root: Path) -> Iterator[None]:
    lock_path = run_root.parent.parent / ".locks" / f"{run_root.parent.name}.{run_root.name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise UserError(f"{run_root} is being written by another `bench run` ({holder}); wait for it to "
                            "finish, or stop it and run again to resume") from None
        fh.truncate(0)
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        try:
            yield
        finally:
            fh.truncate(0)
            fcntl.flock(fh, fcntl.LOCK_UN)
