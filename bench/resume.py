"""Before a run folder is resumed: is it still the same computation?

The run id covers the matrix (``bench.identity``); what it cannot see is compared here, with the
manifest, before any work: entry and package versions (``--allow-version-change`` overrides,
and the override is recorded), checkpoint files and the dataset's sample list (no override: the
stored shards were made from other inputs). Each comparison is one ``Check``; another comparable
setting (a thread count, a determinism switch) is one more line in ``resume_checks``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bench.errors import UserError


@dataclass
class Check:
    name: str  # what is compared, as the user knows it: "attack pgd version", "checkpoint ..."
    stored: Any
    current: Any
    overridable: bool  # --allow-version-change lets the run continue
    fix: str  # what to do instead

    @property
    def differs(self) -> bool:
        return self.stored != self.current


def resume_checks(stored: dict[str, Any], current: dict[str, Any]) -> list[Check]:
    """Every comparison between a manifest's ``fingerprints`` and today's, in the order reported."""
    fresh = "start over with --fresh (or another --out)"
    checks = [Check("package artifact-bench version", stored.get("package"), current["package"], True,
                    f"pass --allow-version-change to keep the stored shards, or {fresh}")]
    stored_entries = stored.get("entries", {})
    for key, now in current["entries"].items():
        checks.append(Check(f"{key} version", _version(stored_entries.get(key)), _version(now), True,
                            f"pass --allow-version-change to keep the stored shards, or {fresh}"))
    stored_ckpt = stored.get("checkpoints", {})
    for where, now in current["checkpoints"].items():
        before = stored_ckpt.get(where, {})
        checks.append(Check(f"checkpoint {now['path']} ({where}) sha256", before.get("sha256", "")[:12],
                            now["sha256"][:12], False, f"restore the file the run started with, or {fresh}"))
    checks.append(Check("dataset sample list fingerprint", str(stored.get("dataset", ""))[:12],
                        current["dataset"][:12], False,
                        f"restore the dataset as it was when the run started, or {fresh}"))
    return checks


def _version(entry: str | None) -> str | None:
    return None if entry is None else entry.rpartition("@")[2]


def check_resume(manifest: dict[str, Any], current: dict[str, Any], allow_version_change: bool) -> list[dict]:
    """Stop with one line at the first mismatch that may not be overridden, or at a version
    mismatch without ``allow_version_change``. Returns the overridden changes to record."""
    allowed = []
    for check in resume_checks(manifest.get("fingerprints", {}), current):
        if not check.differs:
            continue
        if check.overridable and allow_version_change:
            allowed.append({"what": check.name, "stored": check.stored, "current": check.current,
                            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            continue
        raise UserError(f"cannot resume run {manifest.get('run_id')}: {check.name} is {check.current} now, "
                        f"the run was computed with {check.stored}; {check.fix}")
    return allowed
