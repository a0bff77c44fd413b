"""`bench train-detector`: train a registered detector on a registered dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.cli_options import parse_options, trust_checkpoint_option


def register(app: typer.Typer) -> None:
    @app.command("train-detector")
    def train_detector_command(
        detector: Annotated[str, typer.Option("--detector", help="registered detector name")],
        dataset: Annotated[str, typer.Option("--dataset", help="registered dataset name")],
        out: Annotated[Path, typer.Option("--out", help="output weights, NAME.safetensors (+ NAME.json)")],
        epochs: int = typer.Option(5, "--epochs", min=1),
        opt: Annotated[list[str] | None, typer.Option(
            "--opt", help="dataset option key=value (repeatable)")] = None,
        detector_opt: Annotated[list[str] | None, typer.Option(
            "--detector-opt", help="detector kwarg key=value (repeatable)")] = None,
        preset: str | None = typer.Option(None, "--preset", help="detector preset, e.g. tiny"),
        val_dataset_opt: Annotated[list[str] | None, typer.Option(
            "--val-opt", help="options of a separate validation dataset (same name); "
            "without them a --val-fraction of the videos is held out")] = None,
        val_fraction: float = typer.Option(0.2, "--val-fraction"),
        batch_size: int = typer.Option(16, "--batch-size", min=1),
        lr: float = typer.Option(1e-3, "--lr"),
        weight_decay: float = typer.Option(1e-2, "--weight-decay"),
        seed: int = typer.Option(0, "--seed"),
        device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda if present)"),
        hflip: bool = typer.Option(False, "--hflip/--no-hflip", help="random horizontal flips"),
        resume: bool = typer.Option(True, "--resume/--no-resume", help="continue from OUT.resume.pt"),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
        trust_checkpoint: bool = trust_checkpoint_option(),
    ) -> None:
        """Train DETECTOR on DATASET; writes OUT (.safetensors) and its JSON sidecar."""
        from bench.options import check_options
        from bench.registry import DATASETS, create_dataset
        from bench.training import train_detector
        from bench.trust import allow_full_unpickle, refuse_trust_option

        allow_full_unpickle(trust_checkpoint)

        opt, detector_opt, val_dataset_opt = opt or [], detector_opt or [], val_dataset_opt or []
        dataset_opts = parse_options(opt, "--opt")
        kwargs = parse_options(detector_opt, "--detector-opt")
        refuse_trust_option(kwargs, "--detector-opt")
        if preset:
            kwargs["preset"] = preset
        check_options(DATASETS, dataset, dataset_opts, "--opt")
        train_set = create_dataset(dataset, **dataset_opts)
        val_set = None
        if val_dataset_opt:
            val_set = create_dataset(dataset, **parse_options(val_dataset_opt, "--val-opt"))
        result = train_detector(
            detector, train_set, epochs, out, kwargs, val_dataset=val_set, val_fraction=val_fraction,
            batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed, device=device, hflip=hflip,
            resume=resume, quiet=quiet,
            dataset_info={"name": dataset, "options": dataset_opts,
                          "val_options": parse_options(val_dataset_opt, "--val-opt") or None})
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items() if isinstance(v, float))
        print(f"{result.path}  ({metrics})")
