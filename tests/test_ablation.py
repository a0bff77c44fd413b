"""Ablation views (level-wise ASR, step vs quality, per-row latent change) through a real run of
the eraser with a small saved e4e checkpoint."""

import numpy as np
import pytest
import torch
import yaml

from bench.config import load_matrix
from bench.models.checkpoints import save_e4e
from bench.models.e4e import Encoder4Editing
from bench.models.latent import LatentStack
from bench.models.stylegan2 import Generator
from bench.registry import create_dataset, create_detector
from bench.runner import run_matrix


@pytest.fixture(scope="module")
def ablation_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ablation")
    torch.manual_seed(0)
    g = Generator(64, style_dim=64, n_mlp=2, channel_max=32).eval()
    e = Encoder4Editing(n_styles=g.n_latent, input_size=64, style_dim=64, units=(1, 1, 1, 1),
                        widths=(16, 16, 32, 32)).eval()
    la = g.mean_latent(1000, torch.Generator().manual_seed(1))
    save_e4e(tmp / "e4e.pt", e, g, la)
    # calibrate the hand-built detector so these random inversions start out "fake"
    stack = LatentStack(e, g, la)
    data = create_dataset("synthetic", n=16, size=64)
    x = torch.stack([data[i].image01 for i in range(1, 16, 2)])
    with torch.no_grad():
        inv = stack.render01(stack.invert(x), "const", size=64).clamp(0, 1)
        energy = create_detector("checkerboard_energy").features(inv).mean(1)
    threshold = float(energy.min()) * 0.8
    matrix = {
        "name": "ablation-test", "seed": 0, "batch_size": 8, "shard_size": 8, "device": "cpu",
        "dataset": {"name": "synthetic", "n": 16, "size": 64},
        "detectors": {"checker": {"detector": "checkerboard_energy", "threshold": threshold, "scale": 200.0},
                      "laplace": {"detector": "laplacian_energy"}},
        "sources": ["checker"],
        "attacks": {
            "eraser_S": {"attack": "eraser", "levels": "S", "level_bands": "relative", "step": 0.05, "steps": 6,
                         "noise": "const", "checkpoint": str(tmp / "e4e.pt")},
            "eraser_full": {"attack": "eraser", "levels": "full", "step": 0.05, "steps": 6, "noise": "const",
                            "checkpoint": str(tmp / "e4e.pt")},
            # its step (0.001) comes from the 'clean' preset, as resolved when the run was computed
            "eraser_small": {"attack": "eraser", "preset": "clean", "steps": 6, "clamp": False,
                             "checkpoint": str(tmp / "e4e.pt")},
        },
        "metrics": {"mode": "paper", "quality": ["tv", "psnr"], "bootstrap": 100},
    }
    path = tmp / "ablation.yaml"
    path.write_text(yaml.safe_dump(matrix))
    return run_matrix(load_matrix(str(path)), out_root=tmp / "results", quiet=True)


def test_masked_rows_and_latent_change_records(ablation_run):
    r = ablation_run.records()
    s_rows = np.stack(r[r.attack == "eraser_S"]["info_latent_change"].to_list())
    assert s_rows.shape[1] == 10  # a 64 px generator has 10 W+ rows
    # relative bands: S is the first third of the rows (0-2); every other row stays exactly w0
    assert (s_rows[:, 3:] == 0).all() and (s_rows[:, :3] > 0).any()
    full = np.stack(r[r.attack == "eraser_full"]["info_latent_change"].to_list())
    assert (full > 0).all(axis=0).any() and full.max() <= 0.05 * 6 * 8 + 1e-4  # 6 sign steps on 64 dims


def test_level_and_step_tables(ablation_run):
    levels = (ablation_run.tables_dir / "ablation_levels.csv").read_text()
    assert "eraser_S,S," in levels and "eraser_full,full," in levels
    step = (ablation_run.tables_dir / "ablation_step.csv").read_text().splitlines()
    assert step[0].startswith("attack,step,white-box ASR,transfer ASR")
    assert [line.split(",")[1] for line in step[1:]] == ["0.0010", "0.0500", "0.0500"]  # sorted by step
    r = ablation_run.records()
    white = r[(r.attack == "eraser_full") & (r.target == "checker")]
    expected = 100 * white.success.sum() / white.eligible.sum()
    row = next(line for line in step if line.startswith("eraser_full,"))
    assert float(row.split(",")[2]) == pytest.approx(expected, abs=1e-3)


def test_latent_change_figure_for_successful_walks(ablation_run):
    r = ablation_run.records()
    white = r[(r.attack == "eraser_full") & (r.target == "checker")]
    assert white.success.any(), "the calibrated walk should succeed on some samples"
    png = ablation_run.figures_dir / "latent_change_eraser_full.png"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_a_preset_edited_later_leaves_old_ablation_tables_unchanged(ablation_run, monkeypatch):
    """Views read the options stored in the manifest, never today's presets."""
    from typer.testing import CliRunner

    from attacks.eraser import PRESETS
    from bench.cli import app

    before = {p.name: p.read_bytes() for p in ablation_run.tables_dir.glob("ablation_*")}
    monkeypatch.setitem(PRESETS, "clean", {**PRESETS["clean"], "step": 0.2})
    done = CliRunner().invoke(app, ["render", str(ablation_run.root), "--quiet"])
    assert done.exit_code == 0, done.output
    assert {p.name: p.read_bytes() for p in ablation_run.tables_dir.glob("ablation_*")} == before
    stored = {a["label"]: a["options"]["step"] for a in ablation_run.manifest["identity"]["attacks"]}
    assert stored == {"eraser_S": 0.05, "eraser_full": 0.05, "eraser_small": 0.001}
