"""`bench finetune-encoder`: fine-tune an e4e checkpoint on a registered dataset (paper Sec. 2.2)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bench.cli_options import parse_options, trust_checkpoint_option


def run_finetune(dataset: str, checkpoint: Path, preset: str, steps: int | None, out: Path,
                 lpips_weight: float | None = None, id_weight: float | None = None,
                 irse50: Path | None = None, batch_size: int | None = None, lr: float | None = None,
                 dataset_opts: dict[str, Any] | None = None, device: str = "cpu", seed: int = 0,
                 quiet: bool = False) -> Path:
    from bench.errors import UserError
    from bench.finetune import FINETUNE_PRESETS, finetune_encoder
    from bench.models.checkpoints import read_e4e, save_e4e
    from bench.registry import create_dataset

    if preset not in FINETUNE_PRESETS:
        raise UserError(f"--preset {preset!r} is unknown; use {' or '.join(FINETUNE_PRESETS)}")
    if out.exists() and out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file path such as {out / 'e4e_finetuned.pt'}")
    data = create_dataset(dataset, **(dataset_opts or {}))
    ckpt = read_e4e(checkpoint)
    n_steps = steps if steps is not None else FINETUNE_PRESETS[preset]["steps"]
    result = finetune_encoder(ckpt.encoder, ckpt.generator, ckpt.latent_avg, data, n_steps, preset=preset,
                              lpips_weight=lpips_weight, id_weight=id_weight, batch_size=batch_size, lr=lr,
                              irse50=irse50, seed=seed, device=device, quiet=quiet)
    last = result.history[-1] if result.history else {}
    opts = dict(ckpt.opts)
    opts.update(finetune={"dataset": dataset, "dataset_opts": dataset_opts or {}, "preset": preset,
                          "steps": n_steps, "base_checkpoint": str(checkpoint), "final_loss": last.get("loss")})
    return save_e4e(out, result.encoder.cpu(), result.generator.cpu(), result.latent_avg.cpu(), opts)


def register(app: typer.Typer) -> None:
    @app.command("finetune-encoder")
    def finetune_encoder_cmd(
        dataset: Annotated[str, typer.Option("--dataset", help="registered dataset name (see `bench list`)")],
        checkpoint: Annotated[Path, typer.Option("--checkpoint", help="e4e .pt to start from")],
        out: Annotated[Path, typer.Option("--out", help="where to write the fine-tuned e4e-format .pt")],
        preset: Annotated[str, typer.Option("--preset", help="paper (decoder frozen) or official (trains G too)")]
        = "paper",
        steps: Annotated[int | None, typer.Option("--steps", min=1, help="training steps (default: the preset's)")]
        = None,
        lpips_weight: Annotated[float | None, typer.Option("--lpips-weight", help="override; 0 drops LPIPS")] = None,
        id_weight: Annotated[float | None, typer.Option("--id-weight", help="override the ID-loss weight")] = None,
        irse50: Annotated[Path | None, typer.Option("--irse50", help="model_ir_se50.pth for the ID loss")] = None,
        batch_size: Annotated[int | None, typer.Option("--batch-size", min=1)] = None,
        lr: Annotated[float | None, typer.Option("--lr")] = None,
        dataset_opt: Annotated[list[str] | None, typer.Option("--dataset-opt", help="KEY=VALUE for the dataset")]
        = None,
        device: Annotated[str, typer.Option("--device")] = "cpu",
        seed: Annotated[int, typer.Option("--seed")] = 0,
        quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
        trust_checkpoint: bool = trust_checkpoint_option(),
    ) -> None:
        """Fine-tune the e4e encoder on a dataset (l2 + LPIPS + ID loss) and save it in e4e format."""
        from bench.trust import allow_full_unpickle

        allow_full_unpickle(trust_checkpoint)
        path = run_finetune(dataset, checkpoint, preset, steps, out, lpips_weight=lpips_weight,
                            id_weight=id_weight, irse50=irse50, batch_size=batch_size, lr=lr,
                            dataset_opts=parse_options(dataset_opt, "--dataset-opt"), device=device, seed=seed, quiet=quiet)
        print(path)
