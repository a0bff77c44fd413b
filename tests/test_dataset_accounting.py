"""A run accounts for its dataset: a listed video missing on disk is named at the start, stored
in the run folder and shown by `bench show`; the metric weights are inputs like checkpoints."""

import json

import yaml
from conftest import TINY_MATRIX, run_cli
from datasets_fixtures import make_celebdf

MISSING = "Celeb-synthesis/id9_id8_0003.mp4"


def test_a_missing_listed_video_is_reported_stored_and_shown(tmp_path):
    root = make_celebdf(tmp_path / "Celeb-DF-v2")
    with open(root / "List_of_testing_videos.txt", "a") as fh:
        fh.write(f"0 {MISSING}\n")
    matrix = {"name": "mini-celebdf", "seed": 0, "batch_size": 4, "shard_size": 4, "device": "cpu",
              "dataset": {"name": "celebdf", "root": str(root), "size": 32, "count": 2},
              "detectors": {"checker": {"detector": "checkerboard_energy", "input_size": 32}},
              "attacks": {"fgsm": {"eps": 0.035}}, "metrics": {"bootstrap": 50, "quality": ["tv"]}}
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump(matrix))
    ran = run_cli("run", "--matrix", str(path), "--out", str(tmp_path / "r"), "--quiet", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    line = (f"dataset celebdf: 5 videos listed: 3 ok, 1 missing on disk ({MISSING}), 1 corrupt, "
            "0 without a face; 6 face crops (4 real, 2 fake)")
    assert line in ran.stderr.splitlines()  # printed even with --quiet, because a video is missing
    run_dir = next((tmp_path / "r").glob("mini-celebdf/*"))
    stored = json.loads((run_dir / "dataset_stats.json").read_text())
    assert stored["missing_videos"] == [MISSING]
    assert {k: stored["stats"][k] for k in ("videos_listed", "videos_ok", "videos_missing", "videos_corrupt",
                                            "crops_real", "crops_fake")} == {
        "videos_listed": 5, "videos_ok": 3, "videos_missing": 1, "videos_corrupt": 1, "crops_real": 4, "crops_fake": 2}
    shown = run_cli("show", str(run_dir))
    assert shown.returncode == 0 and shown.stdout.splitlines()[0] == line


def test_irse50_and_lpips_trunk_are_hashed_and_checked(tmp_path, monkeypatch):
    from bench.config import load_matrix
    from bench.errors import UserError
    from bench.preflight import check_inputs
    from bench.store import checkpoint_files

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    trunk = tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    data = yaml.safe_load(TINY_MATRIX.read_text())
    data["metrics"].update({"identity": "irse50", "identity_options": {"weights": str(tmp_path / "ir_se50.pth")}})
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_matrix(str(path))
    try:
        check_inputs(cfg)
        raise AssertionError("missing IR-SE50 weights were not reported")
    except UserError as exc:
        message = str(exc)
    assert "ir_se50.pth: file named by metrics.identity_options.weights" in message
    assert f"{trunk}: LPIPS AlexNet trunk" in message  # listed beside the required file

    (tmp_path / "ir_se50.pth").write_bytes(b"ir")
    trunk.parent.mkdir(parents=True)
    trunk.write_bytes(b"alex")
    files = checkpoint_files(cfg.resolved())
    assert files["metrics.identity_options.weights"] == str(tmp_path / "ir_se50.pth")
    assert files["metrics.lpips_trunk"] == str(trunk)


def test_the_manifest_hashes_the_irse50_weights_a_run_used(tmp_path):
    """Regression: the run's fingerprints hashed only detector and attack files, so a changed
    model_ir_se50.pth went unnoticed by the manifest and by resume."""
    import hashlib

    import torch

    from bench.models.irse import Backbone

    weights = tmp_path / "model_ir_se50.pth"
    torch.save(Backbone(112, 50, "ir_se", drop_ratio=0.6).state_dict(), weights)  # pSp's format: a bare state dict
    data = yaml.safe_load(TINY_MATRIX.read_text())
    data["attacks"] = {"fgsm": data["attacks"]["fgsm"]}
    data["metrics"].update({"quality": ["tv"], "identity": "irse50", "identity_options": {"weights": str(weights)}})
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    ran = run_cli("run", "--matrix", str(path), "--limit", "2", "--out", str(tmp_path / "r"), "--quiet", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    manifest = json.loads(next((tmp_path / "r").glob("tiny/*/manifest.json")).read_text())
    assert manifest["fingerprints"]["checkpoints"]["metrics.identity_options.weights"] == {
        "path": str(weights), "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
