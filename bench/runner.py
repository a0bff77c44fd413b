"""The matrix loop (DESIGN.md, "The matrix run").

For each source detector and attack the adversarial set is generated once (per shard), its
quality measured once, and it is then scored on every target detector; clean images are scored
once per target. Every unit of work is a shard of ``shard_size`` fake samples written atomically
by ``RunStore``; a shard that exists is never recomputed, so a killed run resumes where it stopped.
Per-shard random seeds derive from (seed, source, attack, shard index), never from the order of
work, so a resumed run gives the same numbers as an uninterrupted one. With ``ensemble:`` each
attack also gets one set per target t made against the other detectors (``bench/ensemble.py``),
internally the source ``ensemble-for-<t>``, seeded from (seed, "ensemble", attack, t, shard
index) and scored on t alone.

This is the compute stage of ``bench run`` (load -> prepare -> compute -> render): it ends with
the merged records and the manifest; everything shown is rendered from those by ``bench.render``.
Before any work an existing run folder is checked (``bench.resume``) and its shards verified: a
damaged or foreign shard is recomputed with one warning line.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from bench.config import MatrixConfig, validate_names
from bench.detector_contract import checked_p_fake, probe_detectors
from bench.distributed import Ranks, compute_device
from bench.ensemble import ENSEMBLE, adversarial_sets, leave_one_out, left_out
from bench.errors import UserError
from bench.held_warnings import release_warnings
from bench.postprocess import apply_postprocess
from bench.progress import progress_bar
from bench.registry import create_attack, create_dataset, create_detector
from bench.run_lock import run_folder_lock
from bench.store import RunStore
from bench.types import FAKE, REAL, Attack, Detector, validate_records


def pick_device(name: str | None) -> torch.device:
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None


def shard_seed(seed: int, *parts: Any) -> int:
    digest = hashlib.sha256("/".join(map(str, (seed, *parts))).encode()).hexdigest()
    return int(digest[:15], 16)


def quantize(x01: torch.Tensor, mode: str) -> torch.Tensor:
    """8-bit storage as the official code's PNGs: truncation (paper) or rounding (clean)."""
    scaled = x01.detach().float().clamp(0, 1) * 255
    return (torch.floor(scaled) if mode == "paper" else torch.round(scaled)).to(torch.uint8)


def dequantize(x8: torch.Tensor) -> torch.Tensor:
    return x8.float() / 255


def dataset_labels(dataset) -> list[int]:
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        return [int(v) for v in labels]
    return [int(dataset[i].label) for i in range(len(dataset))]


@dataclass
class Built:
    """Everything a matrix needs in memory, built (and validated) before the run folder exists."""

    dataset: Any
    fakes: list[int]
    reals: list[int]
    detectors: dict[str, Detector]
    attacks: dict[str, Attack]
    device: torch.device
    quality: Any = None  # the QualityMeter, built up front so a broken metric backend fails early


def build(cfg: MatrixConfig, limit: int | None, device: str | None, quiet: bool = False) -> Built:
    from bench.preflight import check_inputs

    validate_names(cfg)
    check_inputs(cfg)
    dev = pick_device(device or cfg.device)
    dataset = create_dataset(cfg.dataset.name, **cfg.dataset.options)
    labels = dataset_labels(dataset)
    fakes = [i for i, v in enumerate(labels) if v == FAKE]
    reals = [i for i, v in enumerate(labels) if v == REAL]
    if limit:
        fakes, reals = fakes[:limit], reals[:limit]
    if not fakes:
        raise UserError(f"dataset {cfg.dataset.name!r} has no fake samples to attack; check its options")
    detectors = {}
    for spec in cfg.detectors:
        det = create_detector(spec.name, **spec.kwargs)
        detectors[spec.label] = det.to(dev).eval()
    attacks = {}
    for spec in cfg.attacks:
        attack = create_attack(spec.name, **spec.kwargs)
        if isinstance(attack, nn.Module):
            attack = attack.to(dev).eval()
        attacks[spec.label] = attack
    probe = torch.stack([dataset[i].image01.float() for i in (fakes[:1] + reals[:1])]).to(dev)
    probe_detectors(detectors, probe)  # a detector that breaks the (B,2) finite contract fails here
    needs_reals = any(a.needs_reference for a in attacks.values())
    if needs_reals and not reals:
        raise UserError(f"dataset {cfg.dataset.name!r} has no real samples, which "
                        f"{', '.join(k for k, a in attacks.items() if a.needs_reference)} need as reference")
    quality = None
    if cfg.metrics.quality or cfg.metrics.identity != "none":
        from bench.metrics.measure import QualityMeter

        quality = QualityMeter(cfg.metrics, dev, quiet=quiet)
    return Built(dataset, fakes, reals, detectors, attacks, dev, quality)


class MatrixRun:
    def __init__(self, cfg: MatrixConfig, built: Built, store: RunStore, quiet: bool = False):
        self.cfg, self.built, self.store, self.quiet = cfg, built, store, quiet
        size = cfg.shard_size
        self.shards = shard_chunks(built.fakes, size)
        # the reals are scored too (clean detector performance, AUC under attack), in their own shards
        self.real_shards = shard_chunks(built.reals, size)
        self.computed: list[tuple[str, ...]] = []  # shard keys computed by this process (for tests)
        self._quality = None
        self.versions = store.manifest.get("fingerprints", {}).get("entries", {})
        self.package = store.manifest.get("fingerprints", {}).get("package", "")

    def writer(self, *components: str) -> dict[str, str]:
        """The versions a shard records: the package and the entries that made its numbers."""
        return {"package": self.package, **{c: self.versions.get(c, "") for c in components}}

    def heal(self) -> list[str]:
        """Verify every existing shard against the samples it must hold; remove damaged or
        foreign ones (one warning line each) so that the plan recomputes them."""
        discarded = []
        for k, samples in enumerate(self.shards):
            keys = [(("clean", t), "parquet") for t in self.built.detectors]
            for source in self.set_sources():
                for attack in self.built.attacks:
                    keys += [(("adv", source, attack), "safetensors"), (("quality", source, attack), "parquet")]
                    keys += [(("score", source, attack, t), "parquet") for t in self.targets_of(source)]
                    keys += [(post_key(op, source, attack, t), "parquet") for op in self.cfg.postprocess
                             for t in self.targets_of(source)]
            for key, ext in keys:
                if self.store.discard_if_damaged(key, k, ext, samples):
                    discarded.append("/".join(key) + f"/{k}")
        for k, samples in enumerate(self.real_shards):
            for key in self.real_keys():
                if self.store.discard_if_damaged(key, k, "parquet", samples):
                    discarded.append("/".join(key) + f"/{k}")
        return discarded

    def real_keys(self, target: str | None = None) -> list[tuple[str, ...]]:
        """The shard keys of the reals' scores: clean, and after each post-processing."""
        targets = [target] if target else list(self.built.detectors)
        return [real_key(op, t) for t in targets for op in [None, *self.cfg.postprocess]]

    # -- helpers ---------------------------------------------------------------------------------
    def images(self, indices: list[int]) -> tuple[torch.Tensor, list]:
        samples = [self.built.dataset[i] for i in indices]
        return torch.stack([s.image01.float() for s in samples]), samples

    def reference_for(self, shard_index: int, n: int) -> torch.Tensor:
        reals = self.built.reals
        start = shard_index * self.cfg.shard_size
        picked = [reals[(start + j) % len(reals)] for j in range(n)]
        return self.images(picked)[0]

    def batches(self, n: int) -> Iterator[slice]:
        for start in range(0, n, self.cfg.batch_size):
            yield slice(start, min(n, start + self.cfg.batch_size))

    @torch.no_grad()
    def p_fake(self, detector: Detector, x01: torch.Tensor) -> np.ndarray:
        name = next(label for label, d in self.built.detectors.items() if d is detector)
        out = [checked_p_fake(name, detector, x01[b].to(self.built.device)).float().cpu()
               for b in self.batches(len(x01))]
        return torch.cat(out).numpy().astype(np.float64)

    @property
    def quality(self):
        if self._quality is None and self.built.quality is not None:
            self._quality = self.built.quality
        if self._quality is None:
            from bench.metrics.measure import QualityMeter

            self._quality = QualityMeter(self.cfg.metrics, self.built.device, quiet=self.quiet)
        return self._quality

    # -- the adversarial sets: who makes each and who scores it (bench/ensemble.py) ---------------
    def set_sources(self) -> list[str]:
        """The sources of the run's adversarial sets: the source detectors, then (``ensemble:``)
        ``ensemble_set(t)`` for every target ``t``."""
        targets = list(self.built.detectors)
        return [made for _, made, _ in adversarial_sets([s.label for s in self.cfg.source_specs], targets,
                                                         self.cfg.ensemble)]

    def targets_of(self, source: str) -> list[str]:
        """The targets that score ``source``'s set: all, or for an ensemble set only the one left out."""
        target = self.left_out(source)
        return list(self.built.detectors) if target is None else [target]

    def surrogate(self, source: str) -> Detector:
        """The module an attack runs against for ``source``'s set."""
        target = self.left_out(source)
        return self.built.detectors[source] if target is None else leave_one_out(self.built.detectors, target)

    def made_by(self, source: str) -> list[str]:
        """The entries (for ``writer``) of the detectors that made ``source``'s set."""
        target = self.left_out(source)
        return [f"detectors.{d}" for d in self.built.detectors if (d != target if target else d == source)]

    def seed_parts(self, source: str, attack_label: str) -> tuple[str, ...]:
        """What a set's per-shard seeds derive from (with the run seed and the shard index)."""
        target = self.left_out(source)
        return (source, attack_label) if target is None else (ENSEMBLE, attack_label, target)

    def left_out(self, source: str) -> str | None:
        """The target an ensemble set was made for; None for a detector's set."""
        return left_out(source) if self.cfg.ensemble else None

    # -- the passes ------------------------------------------------------------------------------
    def plan(self, pending_only: bool = False) -> list[tuple[str, Callable[[], None]]]:
        """Every shard job in execution order, as (key, thunk); done shards are skipped inside.
        ``pending_only`` leaves out the jobs whose every shard file exists."""
        jobs: list[tuple[str, Callable[[], None]]] = []
        for target in self.built.detectors:
            for k in range(len(self.shards)):
                if not (pending_only and self.store.has(("clean", target), k, "parquet")):
                    jobs.append((f"clean {target} #{k}", lambda t=target, k=k: self.clean_shard(t, k)))
            for k in range(len(self.real_shards)):
                if not (pending_only and all(self.store.has(key, k, "parquet") for key in self.real_keys(target))):
                    jobs.append((f"reals {target} #{k}", lambda t=target, k=k: self.real_shard(t, k)))
        for source in self.set_sources():
            for attack in self.built.attacks:
                for k in range(len(self.shards)):
                    if not (pending_only and self.attack_done(source, attack, k)):
                        jobs.append((f"{attack} on {source} #{k}",
                                     lambda s=source, a=attack, k=k: self.attack_shard(s, a, k)))
        return jobs

    def attack_done(self, source: str, attack_label: str, k: int) -> bool:
        needs_quality = self.cfg.metrics.quality or self.cfg.metrics.identity != "none"
        return (self.store.has(("adv", source, attack_label), k, "safetensors")
                and (not needs_quality or self.store.has(("quality", source, attack_label), k, "parquet"))
                and all(self.store.has(("score", source, attack_label, t), k, "parquet")
                        for t in self.targets_of(source))
                and all(self.store.has(post_key(op, source, attack_label, t), k, "parquet")
                        for op in self.cfg.postprocess for t in self.targets_of(source)))

    def clean_shard(self, target: str, k: int) -> None:
        key = ("clean", target)
        if self.store.has(key, k, "parquet"):
            return
        x, samples = self.images(self.shards[k])
        frame = pd.DataFrame({
            "sample_index": self.shards[k],
            "sample_id": [s.id for s in samples],
            "video_id": [s.video_id for s in samples],
            "label": [int(s.label) for s in samples],
            "p_fake": self.p_fake(self.built.detectors[target], x),
        })
        self.store.write_frame(key, k, frame, self.shards[k], self.writer(f"detectors.{target}"))
        self.computed.append((*key, str(k)))

    def real_shard(self, target: str, k: int) -> None:
        """The target's scores of one shard of reals: as stored, and after each post-processing
        (so that an AUC after JPEG compares post-processed reals with post-processed fakes)."""
        indices = self.real_shards[k]
        pending = [op for op in [None, *self.cfg.postprocess]
                   if not self.store.has(real_key(op, target), k, "parquet")]
        if not pending:
            return
        x, samples = self.images(indices)
        for op in pending:
            scored = apply_postprocess(op, x) if op else x
            frame = pd.DataFrame({"sample_index": indices, "p_fake": self.p_fake(self.built.detectors[target], scored)})
            if op is None:
                frame.insert(1, "sample_id", [s.id for s in samples])
                frame.insert(2, "video_id", [s.video_id for s in samples])
                frame.insert(3, "label", [int(s.label) for s in samples])
            self.store.write_frame(real_key(op, target), k, frame, indices, self.writer(f"detectors.{target}"))
            self.computed.append((*real_key(op, target), str(k)))

    def attack_shard(self, source: str, attack_label: str, k: int) -> None:
        adv_key = ("adv", source, attack_label)
        if not self.store.has(adv_key, k, "safetensors"):
            self.generate(source, attack_label, k)
        tensors = None
        if self.cfg.metrics.quality or self.cfg.metrics.identity != "none":
            qkey = ("quality", source, attack_label)
            if not self.store.has(qkey, k, "parquet"):
                tensors = self.store.read_tensors(adv_key, k)
                self.measure(source, attack_label, k, tensors)
        for target in self.targets_of(source):
            skey = ("score", source, attack_label, target)
            if self.store.has(skey, k, "parquet"):
                continue
            tensors = tensors or self.store.read_tensors(adv_key, k)
            det = self.built.detectors[target]
            frame = pd.DataFrame({"sample_index": self.shards[k],
                                  "p_fake_adv": self.p_fake(det, dequantize(tensors["adv"]))})
            if "inversion" in tensors:
                frame["p_fake_inversion_image"] = self.p_fake(det, dequantize(tensors["inversion"]))
            self.store.write_frame(skey, k, frame, self.shards[k],
                                   self.writer(*self.made_by(source), f"attacks.{attack_label}", f"detectors.{target}"))
            self.computed.append((*skey, str(k)))
        self.score_postprocessed(source, attack_label, k, tensors)

    def score_postprocessed(self, source: str, attack_label: str, k: int,
                            tensors: dict[str, torch.Tensor] | None = None) -> None:
        """Every target's score of the stored adversarial images after each post-processing
        (real JPEG encoding, real resizing); the attack itself is never recomputed."""
        for op in self.cfg.postprocess:
            processed = None
            for target in self.targets_of(source):
                key = post_key(op, source, attack_label, target)
                if self.store.has(key, k, "parquet"):
                    continue
                if processed is None:
                    tensors = tensors or self.store.read_tensors(("adv", source, attack_label), k)
                    processed = apply_postprocess(op, dequantize(tensors["adv"]))
                frame = pd.DataFrame({"sample_index": self.shards[k],
                                      "p_fake_adv": self.p_fake(self.built.detectors[target], processed)})
                self.store.write_frame(key, k, frame, self.shards[k],
                                       self.writer(*self.made_by(source), f"attacks.{attack_label}",
                                                   f"detectors.{target}"))
                self.computed.append((*key, str(k)))

    def generate(self, source: str, attack_label: str, k: int) -> None:
        attack = self.built.attacks[attack_label]
        detector = self.surrogate(source)
        x, samples = self.images(self.shards[k])
        labels = torch.tensor([int(s.label) for s in samples])
        reference = self.reference_for(k, len(x)) if attack.needs_reference else None
        gen = torch.Generator().manual_seed(shard_seed(self.cfg.seed, *self.seed_parts(source, attack_label), k))
        adv, inversion, info = [], [], {}
        for b in self.batches(len(x)):
            ref = reference[b].to(self.built.device) if reference is not None else None
            out = attack(x[b].to(self.built.device), labels[b].to(self.built.device), detector,
                         generator=gen, reference=ref)
            n = b.stop - b.start
            adv.append(quantize(out.adv01, self.cfg.metrics.mode).cpu())
            if isinstance(out.info.get("inversion"), torch.Tensor):
                inversion.append(quantize(out.info["inversion"], self.cfg.metrics.mode).cpu())
            for name, value in out.info.items():
                if name != "inversion" and isinstance(value, torch.Tensor) and value.dim() >= 1 \
                        and value.shape[0] == n:
                    info.setdefault(name, []).append(value.detach().float().reshape(n, -1).cpu())
        tensors = {"adv": torch.cat(adv), "index": torch.tensor(self.shards[k], dtype=torch.int64)}
        if inversion:
            tensors["inversion"] = torch.cat(inversion)
        tensors.update({f"info.{name}": torch.cat(parts) for name, parts in info.items()
                        if sum(len(p) for p in parts) == len(x)})
        self.store.write_tensors(("adv", source, attack_label), k, tensors, self.shards[k],
                                 self.writer(*self.made_by(source), f"attacks.{attack_label}"))
        self.computed.append(("adv", source, attack_label, str(k)))

    def measure(self, source: str, attack_label: str, k: int, tensors: dict[str, torch.Tensor]) -> None:
        x, _ = self.images(self.shards[k])
        adv = dequantize(tensors["adv"])
        inversion = dequantize(tensors["inversion"]) if "inversion" in tensors else None
        columns = self.quality.measure(x, adv, inversion, self.built.attacks[attack_label])
        frame = pd.DataFrame({"sample_index": self.shards[k], **columns})
        self.store.write_frame(("quality", source, attack_label), k, frame, self.shards[k],
                               self.writer(f"attacks.{attack_label}"))
        self.computed.append(("quality", source, attack_label, str(k)))

    def execute(self) -> None:
        """Compute what is missing and merge; a run whose records are complete and intact
        (a rerun to re-render) touches no shard."""
        if self.finished():
            return
        self.heal()
        self.work(self.plan())
        self.write_merged()

    def finished(self) -> bool:
        """Records intact and no shard missing (a post-processing added to the matrix since the
        records were merged leaves shards to score)."""
        return self.store.records_ok() and not self.plan(pending_only=True)

    def write_merged(self) -> None:
        self.store.write_scores(merge_real_scores(self.store))  # before the records: they mark the run done
        self.store.write_records(self.merge())

    def work(self, jobs: list[tuple[str, Callable[[], None]]]) -> None:
        with progress_bar(self.quiet) as bar:
            task = bar.add_task(f"matrix {self.cfg.name}", total=len(jobs))
            for name, job in jobs:
                bar.update(task, description=name)
                job()
                bar.advance(task)

    # -- merge -----------------------------------------------------------------------------------
    def merge(self) -> pd.DataFrame:
        return merge_records(self.store, lambda indices: self.images(indices)[0])


def post_key(op: str, source: str, attack: str, target: str) -> tuple[str, ...]:
    """Shard key of a target's scores of an adversarial set after the post-processing ``op``."""
    return ("post", op, source, attack, target)


def real_key(op: str | None, target: str) -> tuple[str, ...]:
    """Shard key of a target's scores of the reals, as stored (``op`` None) or after ``op``."""
    return ("real", target) if op is None else ("post_real", op, target)


def shard_chunks(samples: list[int], size: int) -> list[list[int]]:
    """The sample indices of each shard, in order."""
    return [samples[i:i + size] for i in range(0, len(samples), size)]


def read_stacked(store: RunStore, key: tuple[str, ...], chunks: list[list[int]]) -> pd.DataFrame:
    """One frame from every shard of ``key`` (each verified against the samples it must hold)."""
    return pd.concat([store.read_frame(key, k, chunk) for k, chunk in enumerate(chunks)])


def postprocess_names(manifest: dict[str, Any]) -> list[str]:
    """The post-processings of a run (an additive setting: the manifest's current config)."""
    return list(manifest.get("config", {}).get("postprocess") or [])


def merge_real_scores(store: RunStore) -> pd.DataFrame:
    """Every target's scores of the clean evaluation set, reals and fakes: ``target, label,
    sample_index, sample_id, video_id, p_fake`` and, for the reals, ``p_fake_post_<op>``."""
    manifest = store.manifest
    size = manifest["identity"]["shard_size"]
    targets = [d["label"] for d in manifest["identity"]["detectors"]]
    fake_chunks = shard_chunks(manifest["samples"]["fakes"], size)
    real_chunks = shard_chunks(manifest["samples"]["reals"], size)
    out = []
    for target in targets:
        parts = [read_stacked(store, ("clean", target), fake_chunks)]
        if real_chunks:  # a dataset without reals has no real shards
            reals = read_stacked(store, real_key(None, target), real_chunks)
            for op in postprocess_names(manifest):
                post = read_stacked(store, real_key(op, target), real_chunks).set_index("sample_index")["p_fake"]
                reals[f"p_fake_post_{op}"] = post.reindex(reals["sample_index"]).to_numpy()
            parts.insert(0, reals)
        frame = pd.concat(parts, ignore_index=True)
        frame.insert(0, "target", target)
        out.append(frame)
    return pd.concat(out, ignore_index=True)


def merge_records(store: RunStore, originals: Callable[[list[int]], torch.Tensor] | None = None) -> pd.DataFrame:
    """The records of a run from its folder alone: the manifest says which shards exist, which
    samples each holds and how each attack is graded (``traits``); the shards hold the numbers.
    ``originals`` (sample indices -> clean images; the compute stage has the dataset) adds the
    paper-mode per-file ESNLE columns, which need the clean frames side by side."""
    from bench.metrics.asr import success_flags

    manifest = store.manifest
    identity, traits = manifest["identity"], manifest["traits"]
    fakes, size = manifest["samples"]["fakes"], identity["shard_size"]
    shards = shard_chunks(fakes, size)
    ks = range(len(shards))
    targets = [d["label"] for d in identity["detectors"]]
    sources = [t for t in targets if t in (identity.get("sources") or targets)]
    ops = postprocess_names(manifest)  # the manifest is read once, not per cell

    def frames(key):
        return read_stacked(store, key, shards)

    clean = {t: frames(("clean", t)) for t in targets}
    out = []
    # (records' source, the set's shard name, its targets): the ensemble's sets (one per target) last
    for source, made, scored_on in adversarial_sets(sources, targets, identity.get("ensemble")):
        for attack_label in [a["label"] for a in identity["attacks"]]:  # the matrix's order (a list)
            trait = traits[attack_label]
            adv_shards = [store.read_tensors(("adv", made, attack_label), k, shards[k]) for k in ks]
            info = _info_columns(adv_shards)
            qkey = ("quality", made, attack_label)
            quality = frames(qkey) if store.has(qkey, 0, "parquet") else None
            for target in scored_on:
                score = frames(("score", made, attack_label, target))
                for op in ops:
                    post = frames(post_key(op, made, attack_label, target)).set_index("sample_index")["p_fake_adv"]
                    score[f"p_fake_adv_post_{op}"] = score["sample_index"].map(post).to_numpy(dtype=np.float64)
                frame = clean[target].rename(columns={"p_fake": "p_fake_clean"}).merge(score, on="sample_index")
                frame["p_fake_inversion"] = (frame["p_fake_inversion_image"] if trait["inversion_condition"]
                                             else frame["p_fake_clean"])
                frame = frame.drop(columns=[c for c in ["p_fake_inversion_image"] if c in frame])
                if trait["inversion_condition"] and target == source and "info_p_fake_inversion_check" in info:
                    # the eraser graded the official re-inversion itself (inversion_check="paper")
                    check = info.set_index("sample_index")["info_p_fake_inversion_check"]
                    frame["p_fake_inversion"] = frame["sample_index"].map(check).to_numpy(dtype=np.float64)
                eligible, inv_fake, success = success_flags(frame["p_fake_clean"], frame["p_fake_inversion"],
                                                            frame["p_fake_adv"])
                frame["eligible"], frame["inversion_fake"], frame["success"] = eligible, inv_fake, success
                frame.insert(0, "target", target)
                frame.insert(0, "attack_kind", trait["kind"])
                frame.insert(0, "attack", attack_label)
                frame.insert(0, "source", source)
                frame.insert(0, "run_id", store.run_id)
                if quality is not None:
                    frame = frame.merge(quality, on="sample_index", how="left")
                    paper = identity["metrics"]["mode"] == "paper"
                    own_set = target == source or source == ENSEMBLE  # the rows graded by the set's own grader
                    if originals is not None and own_set and paper and "q_esnle_orig" in quality:
                        from bench.metrics.file_esnle import file_esnle_columns, stored_images

                        per_file = file_esnle_columns(frame, originals, stored_images(adv_shards))
                        frame = frame.merge(per_file, on="sample_index", how="left")
                frame = frame.merge(info, on="sample_index", how="left")
                for key, value in trait["budget"].items():
                    frame[f"budget_{key}"] = str(value)
                out.append(frame)
    records = pd.concat(out, ignore_index=True)
    validate_records(records, f"{store.root} (merged records)")
    return records


def _info_columns(shards: list[dict[str, torch.Tensor]]) -> pd.DataFrame:
    index = torch.cat([s["index"] for s in shards]).numpy()
    columns: dict[str, Any] = {"sample_index": index}
    names = sorted({k for s in shards for k in s if k.startswith("info.")})
    for name in names:
        if not all(name in s for s in shards):
            continue
        values = torch.cat([s[name] for s in shards]).numpy()
        label = name.replace("info.", "info_")
        columns[label] = values[:, 0] if values.shape[1] == 1 else list(values)
    return pd.DataFrame(columns)


def open_run(cfg: MatrixConfig, built: Built, out_root: Path, limit: int | None, fresh: bool = False,
             allow_version_change: bool = False, identity: dict[str, Any] | None = None) -> RunStore:
    """The run folder of ``cfg``: created with its manifest, or an existing one checked for a safe
    resume (versions, checkpoints, dataset) before any work, its render settings brought up to date.
    ``identity``: ``run_identity(cfg, limit)`` when the caller has it already."""
    from bench.identity import attack_traits, fingerprints, identity_key, run_identity
    from bench.resume import check_resume
    from bench.store import git_commit, package_versions, run_id_of

    identity = identity or run_identity(cfg, limit)
    current = fingerprints(identity, built.dataset, built.fakes, built.reals)
    config = {**cfg.resolved(), "limit": limit}
    manifest = {
        "run_id": run_id_of(identity_key(identity)), "matrix": cfg.name, "identity": identity, "config": config,
        "fingerprints": current, "traits": attack_traits(built.attacks, identity),
        "samples": {"fakes": built.fakes, "reals": built.reals}, "seed": cfg.seed,
        "versions": package_versions(), "git_commit": git_commit(),
        "checkpoints": current["checkpoints"],  # option path -> {path, sha256}
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "torch_device_count": torch.cuda.device_count(),
        "version_changes": [],
    }
    store = RunStore.create(Path(out_root), manifest, fresh=fresh)
    if not store.created_now:
        stored = store.manifest  # an unreadable one stops here, before any work
        changes = check_resume(stored, current, allow_version_change)
        update: dict[str, Any] = {"config": config}  # render settings (note, explain, bootstrap) as now
        if changes:
            update["version_changes"] = [*stored.get("version_changes", []), *changes]
            update["fingerprints"] = {**stored.get("fingerprints", {}), "entries": current["entries"],
                                      "package": current["package"]}
        store.update_manifest(update)
    return store


def run_matrix(cfg: MatrixConfig, out_root: str | Path = "results", limit: int | None = None,
               device: str | None = None, fresh: bool = False, quiet: bool = False,
               ranks: Ranks | None = None, allow_version_change: bool = False, render: bool = True,
               threads: int | None = None, allow_compute_change: bool = False) -> RunStore:
    """The compute stage: build everything (validating all inputs first), then run or resume the
    matrix. With ``ranks`` (a torchrun launch) this process computes its share; only rank 0
    merges. ``render``: then render tables and figures (``bench.render``) on rank 0.
    ``threads`` overrides the matrix's (bench/compute_settings.py); a resume under other compute
    settings is refused unless ``allow_compute_change``."""
    from bench.compute_settings import ComputeSettings, adopt
    from bench.identity import identity_key, run_identity
    from bench.preflight import check_output_folders
    from bench.store import run_id_of, run_root_of

    limit = limit or cfg.limit
    check_output_folders(Path(out_root))
    if ranks is None:
        rank_device = pick_device(device or cfg.device)
    else:
        rank_device = compute_device(device or cfg.device, ranks.local_rank)
    settings = ComputeSettings.resolve(cfg.threads, threads, rank_device, cfg.deterministic)
    settings.apply()  # before anything is built or computed, in every process and rank
    is_main = ranks is None or ranks.is_main

    def open_store() -> RunStore:
        store = open_run(cfg, built, Path(out_root), limit, fresh and is_main, allow_version_change, identity)
        adopt(store, settings, allow_compute_change, is_main=is_main)
        return store

    if ranks is None:
        built = build(cfg, limit, str(rank_device), quiet=quiet)
    else:  # rank 0 first: building may fill shared caches
        built = ranks.main_first(build, cfg, limit, str(rank_device), quiet=quiet)
    identity = run_identity(cfg, limit)  # resolved once: the lock and the run folder share its id
    root = run_root_of(Path(out_root), cfg.name, run_id_of(identity_key(identity)))
    # rank 0 alone creates, and so locks, the run folder
    with run_folder_lock(root) if is_main else contextlib.nullcontext():
        store = open_store() if ranks is None else ranks.main_first(open_store)
        release_warnings()  # the up-front checks passed: library warnings may show from here on
        if is_main:
            from bench.dataset_stats import record_dataset_stats

            record_dataset_stats(store, cfg.dataset.name, built.dataset, quiet)
        run = MatrixRun(cfg, built, store, quiet=quiet)
        if ranks is None:
            run.execute()
        elif not ranks.execute(run):
            return store  # this rank's shards are on disk; rank 0 merges and renders
        if render:
            from bench.report import render_tables

            render_tables(store, quiet=quiet)
    return store
