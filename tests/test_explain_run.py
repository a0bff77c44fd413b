"""Explanation figures through `bench run`: the example plugin explained like a built-in, a
detector without a Grad-CAM skipped with one line, --no-explain, and a failing figure that
costs the run nothing."""

import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, TINY_MATRIX, run_cli
from PIL import Image

EXAMPLE = ROOT / "examples" / "plugin-detector"
CELL_PX = 160  # explain_figure's default cell size


def entry_point_dir(tmp_path, dist: str, name: str, target: str):
    """A folder that declares one artifact_bench.detectors entry point, as an installed plugin does."""
    info = tmp_path / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[artifact_bench.detectors]\n{name} = {target}\n")
    return tmp_path


def tiny_with(tmp_path, detectors: dict, sources: list[str], explain: dict) -> str:
    data = yaml.safe_load(TINY_MATRIX.read_text())
    data["detectors"].update(detectors)
    data["attacks"] = {"fgsm": {"eps": 0.035}}
    data["sources"] = sources
    data["explain"] = explain
    data["report"] = {"benchmark_section": "figures-test"}
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_the_plugin_example_is_explained_in_a_matrix(tmp_path):
    plugin = entry_point_dir(tmp_path / "plugin", "artifact-bench-example-plugin", "saturation",
                             "artifact_bench_example.detector:saturation_detector")
    env = {"PYTHONPATH": f"{plugin}:{EXAMPLE}:{ROOT}"}
    matrix = tiny_with(tmp_path, {"sat": {"detector": "saturation", "input_size": 32}}, ["sat", "checker"], {"n": 3})
    ran = run_cli("run", "--matrix", matrix, "--out", str(tmp_path / "r"), "--benchmark-md",
                  str(tmp_path / "BENCHMARK.md"), env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "explain 1/2: fgsm on checker" in ran.stderr and "explain 2/2: fgsm on sat" in ran.stderr
    assert "no Grad-CAM" not in ran.stderr and "failed" not in ran.stderr
    figure = next((tmp_path / "r").rglob("explain/sat__fgsm.png"))
    with Image.open(figure) as im:  # 3 image columns + 2 CAM columns for each of the 3 detectors
        assert im.size == ((3 + 2 * 3) * CELL_PX, 3 * CELL_PX)
    assert "<!-- bench:figures-test:start -->" in (tmp_path / "BENCHMARK.md").read_text()


def test_the_example_cam_is_its_saturation_map(monkeypatch):
    """Grad-CAM on the example's saturation layer is that map, min-max scaled: the gradient of
    the logit with respect to it is the same positive number everywhere."""
    from bench.explain import cam_unavailable, gradcam_maps

    monkeypatch.syspath_prepend(str(EXAMPLE))
    from artifact_bench_example.detector import SaturationDetector

    det = SaturationDetector(input_size=32).eval()
    assert cam_unavailable(det) is None
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    maps = gradcam_maps(det, x)
    spread = (x.amax(dim=1) - x.amin(dim=1)).numpy()
    expected = (spread - spread.min(axis=(1, 2), keepdims=True)) / np.ptp(spread, axis=(1, 2), keepdims=True)
    assert np.abs(maps - expected).max() < 1e-4


CAMLESS = '''
import torch
from bench.types import Detector, two_way


class Flat(Detector):
    """Mean brightness; no parameters, so Grad-CAM has nothing to hook."""

    def __init__(self):
        super().__init__(input_size=32)

    def embed(self, xn):
        return xn.mean(dim=(1, 2, 3)).unsqueeze(1)

    def classify(self, xn):
        return two_way(4 * (self.embed(xn)[:, 0] - 0.5))

    def cam_target_layers(self):
        return [torch.nn.Identity()]


def flat(checkpoint=None, trust_checkpoint=False):
    """A detector Grad-CAM cannot explain."""
    return Flat().eval()
'''


def test_a_detector_without_cam_is_skipped_and_no_explain_skips_all(tmp_path):
    plugin = entry_point_dir(tmp_path / "plugin", "flat-plugin", "flat", "flat_detector:flat")
    (plugin / "flat_detector.py").write_text(CAMLESS)
    env = {"PYTHONPATH": f"{plugin}:{ROOT}"}
    matrix = tiny_with(tmp_path, {"flat": {"detector": "flat"}}, ["checker"], {"n": 2})
    args = ["run", "--matrix", matrix, "--out", str(tmp_path / "r"), "--benchmark-md", str(tmp_path / "B.md")]

    first = run_cli(*args, "--no-explain", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "explain 1/" not in first.stderr and not list((tmp_path / "r").rglob("explain"))
    assert (tmp_path / "B.md").is_file() and next((tmp_path / "r").rglob("leaderboard_*.csv"))

    second = run_cli(*args, env=env, cwd=tmp_path)  # resumes: nothing recomputed, figures now
    assert second.returncode == 0, second.stderr
    skipped = [line for line in second.stderr.splitlines() if "no Grad-CAM columns" in line]
    assert skipped == ["explain: no Grad-CAM columns for detector 'flat': it has no parameters (Grad-CAM "
                       "reads the device from the first one)"]
    figure = next((tmp_path / "r").rglob("explain/checker__fgsm.png"))
    with Image.open(figure) as im:  # flat's two CAM columns left out: 3 + 2 * 2 columns
        assert im.size == ((3 + 2 * 2) * CELL_PX, 2 * CELL_PX)


def test_a_failing_figure_keeps_the_run_and_its_benchmark_section(tmp_path, monkeypatch, capsys):
    import bench.explain
    from bench.cli import main

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory\nsecond line")

    monkeypatch.setattr(bench.explain, "explain_figure", broken)
    monkeypatch.chdir(tmp_path)
    matrix = tiny_with(tmp_path, {}, ["checker"], {"n": 2})
    main(["run", "--matrix", matrix, "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert "explain 1/1: fgsm on checker: figure failed (RuntimeError: out of memory); skipped" in err
    assert "second line" not in err
    assert "<!-- bench:figures-test:start -->" in (tmp_path / "BENCHMARK.md").read_text()
    assert next((tmp_path / "r").rglob("leaderboard_*.csv"))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
