"""bench.training and `bench train-detector`: a real training run that must generalise, exact
resume, balanced sampling, video-level split, and the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from bench.errors import UserError
from bench.registry import create_dataset, create_detector
from bench.training import balanced_order, evaluate, split_by_video, train_detector
from detectors import checkpoints
from detectors.checkpoints import load_trained


def _killed(*args, **kwargs):
    """Stands in for the final save: the run dies after its last epoch's resume file."""
    raise KeyboardInterrupt


def test_trained_detector_separates_held_out_samples_and_reloads(tmp_path):
    train = create_dataset("synthetic", n=160, size=64, frames_per_video=1, split="train")
    held_out = create_dataset("synthetic", n=64, size=64, frames_per_video=1, split="test")
    out = tmp_path / "xception_syn.safetensors"
    result = train_detector("xception", train, 4, out, {"preset": "tiny"}, seed=0, quiet=True,
                            dataset_info={"name": "synthetic", "options": {"n": 160}})
    test_metrics = evaluate(result.detector, held_out, 32, "cpu")
    assert test_metrics["val_auc"] > 0.9, test_metrics

    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["detector"] == "xception" and meta["kwargs"]["width"] == 0.125  # preset resolved
    assert meta["input_size"] == 64 and meta["mean"] == [0.5] * 3 and meta["seed"] == 0
    assert meta["dataset"]["name"] == "synthetic" and len(meta["history"]) == 4
    assert meta["metrics"]["val_auc"] == result.metrics["val_auc"]
    assert not out.with_name(out.stem + ".resume.pt").exists()

    x = torch.stack([held_out[i].image01 for i in range(8)])
    with torch.no_grad():
        want = result.detector(x)
        assert torch.equal(create_detector("xception", checkpoint=str(out))(x), want)
        assert torch.equal(load_trained(out)(x), want)


def test_resume_continues_exactly_where_it_stopped(tmp_path, monkeypatch):
    data = create_dataset("synthetic", n=32, size=32, frames_per_video=1, split="train")
    kwargs = {"preset": "tiny", "input_size": 32}
    straight = train_detector("xception", data, 2, tmp_path / "a.safetensors", kwargs, batch_size=8,
                              quiet=True)

    monkeypatch.setattr(checkpoints, "save_trained", _killed)
    with pytest.raises(KeyboardInterrupt):  # dies after epoch 1, before writing the weights
        train_detector("xception", data, 1, tmp_path / "b.safetensors", kwargs, batch_size=8, quiet=True)
    assert (tmp_path / "b.resume.pt").exists()
    monkeypatch.undo()
    resumed = train_detector("xception", data, 2, tmp_path / "b.safetensors", kwargs, batch_size=8, quiet=True)
    assert resumed.history == straight.history
    for (k, a), b in zip(straight.detector.state_dict().items(), resumed.detector.state_dict().values()):
        assert torch.equal(a, b), k

    (tmp_path / "b.resume.pt").write_bytes(b"truncated")
    with pytest.raises(UserError, match="--no-resume"):
        train_detector("xception", data, 1, tmp_path / "b.safetensors", kwargs, quiet=True)


def test_resume_refuses_a_different_run(tmp_path, monkeypatch):
    data = create_dataset("synthetic", n=16, size=32, frames_per_video=1, split="train")
    monkeypatch.setattr(checkpoints, "save_trained", _killed)
    with pytest.raises(KeyboardInterrupt):
        train_detector("xception", data, 1, tmp_path / "c.safetensors", {"preset": "tiny"}, quiet=True)
    monkeypatch.undo()
    with pytest.raises(UserError, match="different run"):
        train_detector("xception", data, 2, tmp_path / "c.safetensors", {"preset": "tiny"}, lr=0.1, quiet=True)


def test_balanced_order_draws_classes_equally():
    labels = [0] * 90 + [1] * 10
    draws = balanced_order(labels * 10, torch.Generator().manual_seed(0))
    fake_share = sum((labels * 10)[i] for i in draws) / len(draws)
    assert abs(fake_share - 0.5) < 0.05  # 0.1 without balancing


def test_split_by_video_keeps_videos_whole_and_both_classes():
    data = create_dataset("synthetic", n=64, size=16, frames_per_video=4)
    train, val = split_by_video(data, 0.25, seed=3)
    assert sorted(train + val) == list(range(64))
    train_videos = {data[i].video_id for i in train}
    val_videos = {data[i].video_id for i in val}
    assert not train_videos & val_videos
    assert {data[i].label for i in val} == {0, 1}


def test_train_detector_cli(tmp_path):
    import typer
    from typer.testing import CliRunner

    from bench.cli_options import parse_options
    from bench.commands.train_detector import register

    assert parse_options(["n=32", "split=train", "artifact=0.1", "name=a=b"], "--opt") == \
        {"n": 32, "split": "train", "artifact": 0.1, "name": "a=b"}
    with pytest.raises(UserError, match="key=value"):
        parse_options(["n"], "--opt")

    app = typer.Typer()
    register(app)

    @app.command("noop")  # a second command so typer keeps sub-command names
    def noop() -> None:
        pass

    out = tmp_path / "cli.safetensors"
    result = CliRunner().invoke(app, [
        "train-detector", "--detector", "xception", "--preset", "tiny", "--detector-opt", "input_size=32",
        "--dataset", "synthetic", "--opt", "n=24", "--opt", "size=32", "--opt", "frames_per_video=1",
        "--epochs", "1", "--batch-size", "8", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["dataset"] == {"name": "synthetic", "options": {"n": 24, "size": 32, "frames_per_video": 1},
                               "val_options": None}
    assert meta["kwargs"]["input_size"] == 32
    assert load_trained(out).input_size == 32
