"""What a run *is*, apart from how it is shown.

``run_identity`` is the part of a matrix that changes numbers: the dataset spec, the detectors
and attacks with fully resolved options (preset expanded, every factory default filled in), the
metric list and modes, seed, shard size, batch size (the statistical attacks match batch
statistics), the sample limit and the sources. Its hash is the run id. Everything else in a
matrix is a render setting (``RENDER_KEYS``: the report note, explain grids, bootstrap count,
``files:`` help), a run setting (``RUN_KEYS``: the device) or an additive one
(``ADDITIVE_KEYS``: post-processings, whose scores sit beside the others): changing those
re-renders or resumes the same run (a new post-processing is scored on resume, nothing else).

``fingerprints`` are the facts about the inputs and code that the run id cannot see without
reading them: each entry's declared ``version``, the package version, every checkpoint's sha256
and a fingerprint of the dataset's sample list. They are stored in the manifest and compared on
every resume (``bench.resume``) before any work.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from bench.config import MatrixConfig

RENDER_KEYS = ("report", "explain", "files", "description")  # top-level keys that only change rendering
RENDER_METRIC_KEYS = ("bootstrap",)  # metrics keys that only change rendering (interval resampling)
RUN_KEYS = ("device", "path")  # how and where it runs, not what it computes
# keys that only add scores beside the existing ones (a new post-processing is scored on resume)
ADDITIVE_KEYS = ("postprocess",)


def run_identity(cfg: MatrixConfig, limit: int | None) -> dict[str, Any]:
    """The identity of ``cfg`` run with ``limit`` (resolved through the registries)."""
    from bench.options import resolve_options
    from bench.registry import ATTACKS, DETECTORS

    resolved = cfg.resolved()
    identity = {k: v for k, v in resolved.items() if k not in RENDER_KEYS + RUN_KEYS + ADDITIVE_KEYS}
    identity["limit"] = limit
    identity["metrics"] = {k: v for k, v in resolved["metrics"].items() if k not in RENDER_METRIC_KEYS}
    identity["detectors"] = [
        {"label": d.label, "name": d.name,
         # detectors keep their options as written: a checkpoint's sidecar supplies architecture
         # options the factory would otherwise default, and the checkpoint's sha256 is fingerprinted
         "options": resolve_options(DETECTORS, d.name, d.kwargs, f"detectors.{d.label}", fill_defaults=False)}
        for d in cfg.detectors]
    identity["attacks"] = [
        {"label": a.label, "name": a.name, "options": resolve_options(ATTACKS, a.name, a.kwargs, f"attacks.{a.label}")}
        for a in cfg.attacks]
    return json.loads(json.dumps(identity, default=str))  # plain JSON data, as the manifest stores it


def identity_key(identity: dict[str, Any]) -> dict[str, Any]:
    """The form the run id hashes: components in label order, so that reordering detectors or
    attacks in a matrix (which changes no number) resumes the same run."""
    key = dict(identity)
    for kind in ("detectors", "attacks"):
        key[kind] = sorted(identity[kind], key=lambda spec: spec["label"])
    key["sources"] = sorted(identity["sources"]) if identity.get("sources") else identity.get("sources")
    return key


def entry_versions(identity: dict[str, Any]) -> dict[str, str]:
    """'<kind>.<label>' -> '<registry name>@<version>' for every component of the run."""
    from bench.registry import ATTACKS, DATASETS, DETECTORS

    versions = {f"dataset.{identity['dataset']['name']}":
                f"{identity['dataset']['name']}@{DATASETS.get(identity['dataset']['name']).version}"}
    for kind, registry in (("detectors", DETECTORS), ("attacks", ATTACKS)):
        for spec in identity[kind]:
            versions[f"{kind}.{spec['label']}"] = f"{spec['name']}@{registry.get(spec['name']).version}"
    return versions


def package_version() -> str:
    from bench import __version__

    return __version__


def checkpoint_hashes(identity: dict[str, Any]) -> dict[str, dict[str, str]]:
    """option path -> {path, sha256} for every existing file a detector or attack option names,
    and the metrics' weight files (IR-SE50, LPIPS trunk)."""
    from bench.store import checkpoint_files, sha256_file

    specs: dict[str, Any] = {kind: [{"label": s["label"], "kwargs": s["options"]} for s in identity[kind]]
                             for kind in ("detectors", "attacks")}
    specs["metrics"] = identity.get("metrics", {})  # checkpoint_files reads the metric weights from here
    return {where: {"path": path, "sha256": sha256_file(Path(path))}
            for where, path in checkpoint_files(specs).items()}


def dataset_fingerprint(dataset: Any, fakes: list[int], reals: list[int]) -> str:
    """sha256 of the (index, identity) list of the samples this run uses: an image added to or
    removed from a folder dataset, or a video to a video dataset, changes it."""
    h = hashlib.sha256()
    for index in [*fakes, *reals]:
        h.update(f"{index}\0{sample_id(dataset, index)}\n".encode())
    h.update(f"fakes={len(fakes)} reals={len(reals)}".encode())
    return h.hexdigest()


def sample_id(dataset: Any, index: int) -> str:
    """A sample's identity without decoding its image when the dataset can say it cheaply:
    its file path, else its video id and label, else (slow) the loaded sample's id."""
    paths = getattr(dataset, "paths", None)
    if paths is not None:
        return str(paths[index])
    video_ids, labels = getattr(dataset, "video_ids", None), getattr(dataset, "labels", None)
    if video_ids is not None and labels is not None:
        return f"{video_ids[index]}\0{labels[index]}"
    return str(dataset[index].id)


def fingerprints(identity: dict[str, Any], dataset: Any, fakes: list[int], reals: list[int]) -> dict[str, Any]:
    return {"entries": entry_versions(identity), "package": package_version(),
            "checkpoints": checkpoint_hashes(identity), "dataset": dataset_fingerprint(dataset, fakes, reals)}


def attack_traits(attacks: dict[str, Any], identity: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What the views need to know about each built attack, stored once in the manifest so that
    grading and leaderboards never ask today's code: kind, grading rule, threat model, budget."""
    from bench.registry import ATTACKS

    names = {spec["label"]: spec["name"] for spec in identity["attacks"]}
    traits = {}
    for label, attack in attacks.items():
        budget = {k: (v if isinstance(v, (int, float, str, type(None))) else str(v)) for k, v in attack.budget().items()}
        declared = ATTACKS.get(names[label]).threat_model
        traits[label] = {
            "kind": "latent" if attack.is_latent else "pixel",
            # the inversion control is graded without the "inversion still fake" condition
            "inversion_condition": bool(attack.is_latent and getattr(attack, "inversion_condition", True)),
            "threat_model": declared or threat_model_of(attack.is_latent, budget),
            "budget": budget,
        }
    return traits


def threat_model_of(is_latent: bool, budget: dict[str, Any]) -> str:
    """The leaderboard family of an attack that does not declare one."""
    if is_latent:
        return "latent"
    if str(budget.get("norm", "")).lower() in ("linf", "l-inf", "l_inf") and budget.get("eps") is not None:
        return "linf"
    return "statistical"
