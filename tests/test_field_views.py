"""Issue #16 wired into a run: the reals are scored, a post-processing re-scores the stored
adversarial images, and the detector / under-attack / post-processing tables are views of the
stored scores. Checked through `bench run` on the tiny matrix against numbers recomputed here
(scikit-learn's AUC, Pillow's JPEG, the stored images)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_MATRIX, run_cli
from sklearn.metrics import roc_auc_score

from bench.postprocess import apply_postprocess
from bench.report import views
from bench.store import RunStore

MATRIX = TINY_MATRIX.read_text().replace("name: tiny", "name: tinypp")


def write_matrix(folder, postprocess: str | None) -> str:
    text = MATRIX + (f"postprocess: {postprocess}\n" if postprocess else "")
    path = folder / "tinypp.yaml"
    path.write_text(text)
    return str(path)


def run_folder(out) -> RunStore:
    (folder,) = (out / "tinypp").iterdir()
    return RunStore(folder)


@pytest.fixture(scope="module")
def pp_run(tmp_path_factory):
    """The tiny matrix run first without post-processing, then with jpeg75 added (a resume)."""
    folder = tmp_path_factory.mktemp("pp")
    out = folder / "out"
    first = run_cli("run", "-m", write_matrix(folder, None), "--out", str(out), "--quiet")
    assert first.returncode == 0, first.stderr
    store = run_folder(out)
    adv_files = {p: p.stat().st_mtime_ns for p in (store.root / "shards" / "adv").rglob("*.safetensors")}
    second = run_cli("run", "-m", write_matrix(folder, "[jpeg75]"), "--out", str(out), "--quiet")
    assert second.returncode == 0, second.stderr
    return run_folder(out), adv_files


def test_adding_a_postprocessing_resumes_the_same_run_and_recomputes_no_attack(pp_run):
    store, adv_files = pp_run
    assert adv_files  # the adversarial shards of the first run
    for path, mtime in adv_files.items():
        assert path.stat().st_mtime_ns == mtime, path  # not one attack recomputed
    assert len(list((store.root / "shards" / "post" / "jpeg75").rglob("*.parquet"))) == len(adv_files) * 2  # x 2 targets
    assert list((store.root / "shards" / "post_real" / "jpeg75").rglob("*.parquet"))
    records = store.records()
    assert records["p_fake_adv_post_jpeg75"].notna().all()


def test_post_processed_scores_are_the_targets_scores_of_the_jpeg_encoded_stored_images(pp_run):
    from bench.config import load_matrix
    from bench.registry import create_detector

    store, _ = pp_run
    records = store.records()
    cfg = load_matrix(str(TINY_MATRIX))
    spec = next(d for d in cfg.detectors if d.label == "laplace")
    detector = create_detector(spec.name, **spec.kwargs).eval()
    tensors = store.read_tensors(("adv", "checker", "pgd"), 0)
    adv = tensors["adv"].float() / 255
    with torch.no_grad():
        expected = torch.softmax(detector(apply_postprocess("jpeg75", adv)).float(), dim=1)[:, 1].double().numpy()
        unprocessed = torch.softmax(detector(adv).float(), dim=1)[:, 1].double().numpy()
    cell = records[(records["source"] == "checker") & (records["attack"] == "pgd") & (records["target"] == "laplace")]
    stored = cell.set_index("sample_index").loc[tensors["index"].tolist(), "p_fake_adv_post_jpeg75"].to_numpy()
    np.testing.assert_allclose(stored, expected, atol=1e-6)
    assert np.abs(expected - unprocessed).max() > 1e-3  # the JPEG changed what the detector saw


def test_detector_table_is_the_auc_of_the_stored_reals_and_fakes(pp_run):
    store, _ = pp_run
    scores = store.scores()
    table = views(store)["detectors"]
    for target, group in scores.groupby("target"):
        assert (group["label"] == 0).sum() == 16 and (group["label"] == 1).sum() == 16  # the reals are scored
        auc = 100 * roc_auc_score(group["label"], group["p_fake"])
        assert table.loc[(target, "frame"), "AUC"] == pytest.approx(auc)
        assert table.loc[(target, "frame"), "reals"] == 16
        per_video = group.groupby("video_id").agg(label=("label", "first"), p=("p_fake", "mean"))
        assert table.loc[(target, "video"), "reals"] == (per_video["label"] == 0).sum()
        assert table.loc[(target, "video"), "AUC"] == pytest.approx(100 * roc_auc_score(per_video["label"], per_video["p"]))
        assert table.loc[(target, "frame"), "AUC lo"] <= table.loc[(target, "frame"), "AUC"] <= table.loc[(target, "frame"), "AUC hi"]


def test_under_attack_table_has_both_denominators_and_the_auc_on_reals_vs_adversarial_fakes(pp_run):
    store, _ = pp_run
    records, scores = store.records(), store.scores()
    long = views(store)["under_attack"]
    cell = records[(records["source"] == "laplace") & (records["attack"] == "pgd") & (records["target"] == "checker")]
    row = long.loc[("laplace", "pgd", "checker")]
    assert row["ASR (%) of detected fakes"] == pytest.approx(100 * cell["success"].sum() / cell["eligible"].sum())
    assert row["ASR (%) of all attacked fakes"] == pytest.approx(100 * cell["success"].sum() / len(cell))
    reals = scores[(scores["target"] == "checker") & (scores["label"] == 0)]["p_fake"]
    labels = np.r_[np.zeros(len(reals)), np.ones(len(cell))]
    auc = 100 * roc_auc_score(labels, np.r_[reals.to_numpy(), cell["p_fake_adv"].to_numpy()])
    assert row["AUC (%) frame"] == pytest.approx(auc)
    matrix = views(store)["auc_under_attack"]
    assert matrix.loc[("pgd", "laplace"), "checker"] == pytest.approx(auc)
    assert matrix.index[0] == ("clean", "-")


def test_asr_after_jpeg_uses_the_post_processed_scores(pp_run):
    store, _ = pp_run
    records = store.records()
    table = views(store)["postprocess_jpeg75"]
    off = records[(records["attack"] == "pgd") & (records["source"] != records["target"])]
    per_cell = []
    for _, cell in off.groupby(["source", "target"]):
        eligible = cell["eligible"].to_numpy(bool)
        success = eligible & (cell["p_fake_adv_post_jpeg75"].to_numpy() <= 0.5) & cell["inversion_fake"].to_numpy(bool)
        per_cell.append(100 * success.sum() / eligible.sum())
    assert table.loc["pgd", "transfer ASR after jpeg75"] == pytest.approx(np.mean(per_cell))


def test_benchmark_section_shows_the_detector_table_first(pp_run, tmp_path):
    from bench.report import render_benchmark_section

    store, _ = pp_run
    text = render_benchmark_section(store, "tiny")
    headings = [line for line in text.splitlines() if line.startswith("### ")]
    assert headings[0].startswith("### Detectors on the clean evaluation set")
    assert any("after jpeg75" in h for h in headings)
    assert "[" in text.split("### Detectors")[1].split("###")[0]  # intervals shown beside the values


def test_unknown_postprocess_is_one_line_with_a_suggestion(tmp_path):
    result = run_cli("run", "-m", write_matrix(tmp_path, "[jpeg75, jepg90]"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "jepg90" in result.stderr and "jpeg90" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_records_keep_the_scores_columns_readable_by_pandas(pp_run):
    store, _ = pp_run
    assert isinstance(store.scores(), pd.DataFrame)
    assert set(store.scores().columns) >= {"target", "label", "p_fake", "video_id", "p_fake_post_jpeg75"}
