"""What the dataset gave a run: listed, missing, corrupt and faceless videos, and the crops.

Video adapters count every listed video that is absent on disk, unreadable or without a face
(``VideoFaceDataset.stats``, ``.missing``) instead of failing. A run prints that account as one
line before any work, stores it beside the manifest as ``dataset_stats.json`` and ``bench show``
repeats it, so a result never silently rests on fewer videos than the split lists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.progress import console
from bench.store import RunStore, write_json

STATS_FILE = "dataset_stats.json"
NAMED_MISSING = 3  # missing videos named in the summary line; the file lists all of them


def dataset_stats(name: str, dataset: Any) -> dict[str, Any]:
    """The dataset's own counts (``stats``), its sample count and every listed video missing on disk."""
    stats = dict(getattr(dataset, "stats", None) or {})
    stats.setdefault("samples", len(dataset))
    missing = sorted(str(getattr(e, "path", e)) for e in getattr(dataset, "missing", []) or [])
    return {"dataset": name, "stats": stats, "missing_videos": missing}


def summary_line(info: dict[str, Any]) -> str:
    """One line: ``dataset celebdf: 518 videos listed: 510 ok, 3 missing (a.mp4, ...), 2 corrupt, ...``."""
    stats, missing = info["stats"], info["missing_videos"]
    parts = []
    if "videos_listed" in stats:
        named = ", ".join(missing[:NAMED_MISSING]) + (f", +{len(missing) - NAMED_MISSING} more"
                                                       if len(missing) > NAMED_MISSING else "")
        parts.append(f"{stats['videos_listed']} videos listed: {stats.get('videos_ok', 0)} ok, "
                     f"{stats.get('videos_missing', 0)} missing on disk" + (f" ({named})" if missing else "")
                     + f", {stats.get('videos_corrupt', 0)} corrupt, {stats.get('videos_no_face', 0)} without a face")
    if "crops" in stats:
        parts.append(f"{stats['crops']} face crops ({stats.get('crops_real', 0)} real, "
                     f"{stats.get('crops_fake', 0)} fake)")
        if stats.get("frames_no_face"):
            parts[-1] += f", {stats['frames_no_face']} of {stats.get('frames_read', 0)} frames without a face"
    else:
        parts.append(f"{stats['samples']} samples")
    return f"dataset {info['dataset']}: " + "; ".join(parts)


def record_dataset_stats(store: RunStore, name: str, dataset: Any, quiet: bool = False) -> dict[str, Any]:
    """Print the account (missing videos even with --quiet) and store it in the run folder."""
    info = dataset_stats(name, dataset)
    write_json(store.root / STATS_FILE, info)
    if not quiet or info["missing_videos"]:
        console.print(summary_line(info), soft_wrap=True, highlight=False, markup=False)
    return info


def stored_summary(run_dir: Path) -> str | None:
    """The summary line of a run folder's stored account, or None for runs made before it existed."""
    path = Path(run_dir) / STATS_FILE
    return summary_line(json.loads(path.read_text())) if path.is_file() else None
