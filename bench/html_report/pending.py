"""What a run has done so far, read from its shard files: the page's "pending" section.

A run writes one shard file per unit of work (``bench/store.py``): ``clean/<target>``,
``adv/<source>/<attack>``, ``quality/<source>/<attack>`` and ``score/<source>/<attack>/<target>``.
The keys a finished run has follow from its resolved config; the number of shards per key
depends on the dataset's size, which the manifest does not hold, so the page counts the shard
files done and names the keys that have none yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.ensemble import adversarial_sets
from bench.store import RunStore

EXTENSIONS = {"clean": "parquet", "adv": "safetensors", "quality": "parquet", "score": "parquet"}


@dataclass
class KindProgress:
    kind: str
    files: int  # shard files written
    keys_started: int
    keys_expected: int
    not_started: list[str] = field(default_factory=list)  # "source / attack" keys without any shard


def expected_keys(config: dict) -> dict[str, list[tuple[str, ...]]]:
    targets = [d["label"] for d in config.get("detectors", [])]
    sources = config.get("sources") or targets
    attacks = [a["label"] for a in config.get("attacks", [])]
    metrics = config.get("metrics", {})
    measured = bool(metrics.get("quality")) or metrics.get("identity", "none") not in (None, "none")
    sets = adversarial_sets(sources, targets, config.get("ensemble"))  # with the ensemble's, one per target
    made = [(name, attack) for _, name, _ in sets for attack in attacks]
    return {
        "clean": [(t,) for t in targets],
        "adv": made,
        "quality": made if measured else [],
        "score": [(name, attack, t) for _, name, scored_on in sets for attack in attacks for t in scored_on],
    }


def shard_progress(store: RunStore) -> list[KindProgress]:
    progress = []
    for kind, keys in expected_keys(store.manifest.get("config", {})).items():
        if not keys:
            continue
        counts = {key: len(store.shard_indices((kind, *key), EXTENSIONS[kind])) for key in keys}
        progress.append(KindProgress(
            kind, files=sum(counts.values()), keys_started=sum(1 for c in counts.values() if c),
            keys_expected=len(keys),
            not_started=[" / ".join(key) for key, count in counts.items() if not count]))
    return progress


def has_shards(store: RunStore) -> bool:
    root = store.root / "shards"
    return root.is_dir() and any(p.is_file() for kind in EXTENSIONS for p in (root / kind).rglob(f"*.{EXTENSIONS[kind]}"))


def explanation_pending(store: RunStore) -> bool:
    """The matrix asks for explanation grids and none is in the run folder yet."""
    wanted = store.manifest.get("config", {}).get("explain")
    return bool(wanted) and not any((store.figures_dir / "explain").glob("*.png"))

