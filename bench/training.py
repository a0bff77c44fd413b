"""Train any registered detector on any registered dataset.

Class-balanced sampling, AdamW, bf16 autocast on CUDA (losses in fp32), validation AUC and
accuracy after every epoch, and a resume file written after every epoch so a killed run continues
from its last finished epoch. The result is ``OUT.safetensors`` plus the sidecar ``OUT.json``
(registry name, architecture kwargs, input size, normalisation, dataset, seed, metrics) that
``create_detector(name, checkpoint=OUT)`` and ``detectors.checkpoints.load_trained(OUT)`` read.

Detectors with their own objective expose ``training_loss(x01, labels) -> (loss, logits)``
(RECCE: BCE + reconstruction; MAT: CE + regional independence); others train with cross-entropy.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import UserError
from bench.progress import progress_bar
from bench.types import Sample, p_fake_from_logits, resize_to


@dataclass
class TrainResult:
    detector: nn.Module
    path: Path
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)


def train_detector(detector_name: str, dataset: Any, epochs: int, out: str | os.PathLike,
                   detector_kwargs: dict[str, Any] | None = None, *, val_dataset: Any = None,
                   val_fraction: float = 0.2, batch_size: int = 16, lr: float = 1e-3,
                   weight_decay: float = 1e-2, seed: int = 0, device: str | None = None, hflip: bool = False,
                   recalibrate_bn: bool = True, resume: bool = True, quiet: bool = False,
                   dataset_info: dict[str, Any] | None = None) -> TrainResult:
    """Train ``detector_name`` (built with ``detector_kwargs``, presets allowed) on ``dataset``
    (indexable, items ``bench.types.Sample``) and write ``out`` (.safetensors) + sidecar.

    Without ``val_dataset``, a ``val_fraction`` of the videos (never frames of one video on both
    sides) is held out for validation. ``recalibrate_bn`` re-estimates batch-norm statistics
    on training images after each epoch (short runs otherwise leave running statistics far from
    the weights' and eval-mode outputs collapse). Returns the trained detector (eval mode, CPU).
    """
    from bench.registry import DETECTORS, create_detector
    from detectors.checkpoints import save_trained

    out = Path(out)
    if out.suffix != ".safetensors":
        raise UserError(f"--out {str(out)!r} must end in .safetensors")
    if epochs < 1:
        raise UserError(f"--epochs must be >= 1 (got {epochs})")
    kwargs = DETECTORS.resolve_kwargs(detector_name, dict(detector_kwargs or {}))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    random.seed(seed)

    if val_dataset is None:
        train_idx, val_idx = split_by_video(dataset, val_fraction, seed)
        train_set, val_set = Subset(dataset, train_idx), Subset(dataset, val_idx)
    else:
        train_set, val_set = dataset, val_dataset
    if len(train_set) == 0 or len(val_set) == 0:
        raise UserError("training needs samples on both sides of the validation split; "
                        "add data or change --val-fraction")

    model = create_detector(detector_name, **kwargs).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    labels = [label_of(train_set, i) for i in range(len(train_set))]
    sampler_gen = torch.Generator().manual_seed(seed)
    run_key = _run_key(detector_name, kwargs, dataset_info, seed, lr, batch_size, weight_decay, hflip,
                       recalibrate_bn)
    state_path = out.with_name(out.stem + ".resume.pt")
    history: list[dict[str, float]] = []
    start = 0
    if resume and state_path.is_file():
        start, history = _load_resume(state_path, run_key, model, optimizer, sampler_gen)

    steps_per_epoch = math.ceil(len(train_set) / batch_size)
    with progress_bar(quiet) as progress:
        task = progress.add_task(f"train {detector_name}", total=epochs * steps_per_epoch,
                                 completed=start * steps_per_epoch)
        for epoch in range(start, epochs):
            model.train()
            order = balanced_order(labels, sampler_gen)
            total = 0.0
            for first in range(0, len(order), batch_size):
                x, y = collate([train_set[i] for i in order[first:first + batch_size]], model.input_size)
                if hflip:
                    flip = torch.rand(len(y), generator=sampler_gen) < 0.5
                    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                x, y = x.to(device), y.to(device)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
                    loss = training_loss(model, x, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(y)
                progress.advance(task)
            if recalibrate_bn:
                recalibrate_batchnorm(model, train_set, batch_size, device, generator=sampler_gen)
            metrics = evaluate(model, val_set, batch_size, device)
            metrics = {"epoch": epoch + 1, "train_loss": total / len(order), **metrics}
            history.append(metrics)
            progress.update(task, description=f"train {detector_name} ep {epoch + 1}/{epochs} "
                            f"val AUC {metrics['val_auc']:.3f}")
            _save_resume(state_path, run_key, epoch + 1, model, optimizer, sampler_gen, history)

    model.eval()
    final = history[-1] if history else {}
    meta = {"detector": detector_name, "kwargs": kwargs, "input_size": model.input_size,
            "mean": model.norm_mean.flatten().tolist(), "std": model.norm_std.flatten().tolist(),
            "dataset": dataset_info or {"name": type(dataset).__name__}, "seed": seed, "epochs": epochs,
            "train": {"batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "hflip": hflip,
                      "recalibrate_bn": recalibrate_bn,
                      "val_fraction": None if val_dataset is not None else val_fraction},
            "metrics": final, "history": history}
    save_trained(model.cpu(), out, meta)
    state_path.unlink(missing_ok=True)
    return TrainResult(model, out, dict(final), history)


# -- pieces ----------------------------------------------------------------------------------------
class Subset:
    def __init__(self, base: Any, indices: Sequence[int]):
        self.base, self.indices = base, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Sample:
        return self.base[self.indices[i]]

    def label_of(self, i: int) -> int:
        return label_of(self.base, self.indices[i])


def label_of(dataset: Any, i: int) -> int:
    """A sample's label, without decoding its image when the dataset can say it cheaply."""
    fn = getattr(dataset, "label_of", None)
    return int(fn(i)) if callable(fn) else int(dataset[i].label)


def split_by_video(dataset: Any, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Hold out ``val_fraction`` of the videos of each class (at least one per class)."""
    if not 0 < val_fraction < 1:
        raise UserError(f"--val-fraction must be in (0, 1) (got {val_fraction})")
    videos: dict[tuple[int, str], list[int]] = {}
    for i in range(len(dataset)):
        s = dataset[i]
        videos.setdefault((int(s.label), s.video_id or s.id), []).append(i)
    rng = random.Random(seed)
    val: list[int] = []
    for label in (0, 1):
        keys = sorted(k for k in videos if k[0] == label)
        rng.shuffle(keys)
        n_val = max(1, round(len(keys) * val_fraction)) if len(keys) > 1 else 0
        for k in keys[:n_val]:
            val.extend(videos[k])
    held = set(val)
    return [i for i in range(len(dataset)) if i not in held], sorted(val)


def balanced_order(labels: Sequence[int], generator: torch.Generator) -> list[int]:
    """One epoch of indices drawn with replacement so each class is equally likely."""
    y = torch.tensor(labels)
    counts = torch.bincount(y, minlength=2).clamp(min=1).float()
    weights = (1.0 / counts)[y]
    return torch.multinomial(weights, len(labels), replacement=True, generator=generator).tolist()


def collate(samples: Sequence[Sample], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    images = [s.image01 if s.image01.shape[-2:] == (size, size) else resize_to(s.image01[None], size)[0]
              for s in samples]
    return torch.stack(images).float(), torch.tensor([int(s.label) for s in samples])


def training_loss(model: nn.Module, x01: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    custom = getattr(model, "training_loss", None)
    if callable(custom):
        return custom(x01, labels)[0]
    return F.cross_entropy(model(x01).float(), labels)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, dataset: Any, batch_size: int, device: str,
                          generator: torch.Generator, max_samples: int = 512) -> None:
    """Replace batch-norm running statistics with their plain average over up to ``max_samples``
    training images (as ``torch.optim.swa_utils.update_bn`` does), then return to eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the recalibration batches
    model.train()
    order = torch.randperm(len(dataset), generator=generator)[:max_samples].tolist()
    for first in range(0, len(order), batch_size):
        x, _ = collate([dataset[i] for i in order[first:first + batch_size]], model.input_size)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
            model(x.to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Any, batch_size: int, device: str) -> dict[str, float]:
    """Validation AUC and accuracy (threshold 0.5 on p_fake) in eval mode."""
    model.eval()
    scores, labels = [], []
    for first in range(0, len(dataset), batch_size):
        x, y = collate([dataset[i] for i in range(first, min(first + batch_size, len(dataset)))],
                       model.input_size)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
            scores.append(p_fake_from_logits(model(x.to(device))).cpu())
        labels.append(y)
    p, y = torch.cat(scores), torch.cat(labels)
    return {"val_auc": roc_auc(p, y), "val_acc": float(((p > 0.5).long() == y).float().mean())}


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve (NaN when only one class is present)."""
    if labels.min() == labels.max():
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels.numpy(), scores.float().numpy()))


# -- resume ----------------------------------------------------------------------------------------
def _run_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _save_resume(path: Path, key: str, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                 generator: torch.Generator, history: list[dict[str, float]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"key": key, "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "sampler_rng": generator.get_state(), "torch_rng": torch.random.get_rng_state(),
                "history": history}, tmp)
    os.replace(tmp, path)


def _load_resume(path: Path, key: str, model: nn.Module, optimizer: torch.optim.Optimizer,
                 generator: torch.Generator) -> tuple[int, list[dict[str, float]]]:
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign file
        raise UserError(f"resume file {str(path)!r} is unreadable ({type(exc).__name__}); delete it "
                        "or pass --no-resume") from exc
    if not isinstance(state, dict) or state.get("key") != key:
        raise UserError(f"resume file {str(path)!r} belongs to a different run (detector, kwargs, "
                        "dataset or optimiser settings changed); delete it or pass --no-resume")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["sampler_rng"])
    torch.random.set_rng_state(state["torch_rng"])
    return int(state["epoch"]), list(state["history"])
