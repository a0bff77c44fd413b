"""A dataset option the adapter does not take ends in one line before any work, not a traceback."""

import yaml
from conftest import TINY_MATRIX, run_cli


def test_bench_run_refuses_an_unknown_dataset_option(tmp_path):
    data = yaml.safe_load(TINY_MATRIX.read_text())
    data["dataset"]["frames_per_vid"] = 2
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    ran = run_cli("run", "--matrix", str(path), "--out", str(tmp_path / "r"))
    assert ran.returncode == 2 and "Traceback" not in ran.stderr
    assert ran.stderr.strip().splitlines() == [
        f"error: {path}: dataset: unknown option 'frames_per_vid' for dataset 'synthetic'. Did you mean "
        "'frames_per_video'? Options: artifact, frames_per_video, n, seed, size, split"]
    assert not (tmp_path / "r").exists()


def test_train_detector_refuses_an_unknown_dataset_option(tmp_path):
    ran = run_cli("train-detector", "--detector", "xception", "--preset", "tiny", "--dataset", "synthetic",
                  "--opt", "nn=16", "--out", str(tmp_path / "x.safetensors"))
    assert ran.returncode == 2 and "Traceback" not in ran.stderr
    assert "error: --opt: unknown option 'nn' for dataset 'synthetic'. Did you mean 'n'?" in ran.stderr
    assert not list(tmp_path.iterdir())
