import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from bench.metrics.detection import (
    asr_denominators,
    detection_metrics,
    detector_table,
    roc,
    under_attack_metrics,
    under_attack_table,
    video_detection_metrics,
    video_scores,
)

# reals 0.1 0.4 0.8 0.2, fakes 0.35 0.8 0.9 0.6 (one real/fake tie at 0.8)
LABELS = [0, 0, 1, 1, 0, 1, 0, 1]
SCORES = [0.1, 0.4, 0.35, 0.8, 0.8, 0.9, 0.2, 0.6]


def test_hand_computed_metrics_match_sklearn():
    out = detection_metrics(LABELS, SCORES, n_boot=200)
    # AUC: fake>real pairs 2 + 3 + 4 + 3, plus the 0.8 tie as a half, over 16 pairs
    assert out["auc"] == pytest.approx(12.5 / 16)
    assert out["auc"] == pytest.approx(roc_auc_score(LABELS, SCORES))
    # AP: thresholds .9 .8 .6 .35 reach recall .25 .5 .75 1 at precision 1, 2/3, 3/4, 4/6
    assert out["ap"] == pytest.approx(0.25 * (1 + 2 / 3 + 3 / 4 + 4 / 6))
    assert out["ap"] == pytest.approx(average_precision_score(LABELS, SCORES))
    # ROC point (FPR .25, TPR .75) at threshold 0.6 has FPR = FNR exactly
    assert out["eer"] == pytest.approx(0.25)
    # only threshold 0.9 keeps FPR = 0 (< 1 %): TPR 1/4
    assert out["tpr_at_1fpr"] == pytest.approx(0.25)
    assert out["acc"] == pytest.approx(6 / 8)  # p > .5 -> fake; misses 0.35 (fake) and 0.8 (real)
    assert (out["n_real"], out["n_fake"], out["reason"]) == (4, 4, "")
    for m in ("auc", "ap", "eer", "tpr_at_1fpr", "acc"):
        assert out[f"{m}_lo"] <= out[m] <= out[f"{m}_hi"]
    assert detection_metrics(LABELS, SCORES, n_boot=200) == out  # seeded


def test_roc_points_are_sklearns():
    curve = roc(np.array(LABELS), np.array(SCORES))
    fpr, tpr, _ = roc_curve(LABELS, SCORES, drop_intermediate=False)
    np.testing.assert_allclose(curve.fpr, fpr)
    np.testing.assert_allclose(curve.tpr, tpr)


def test_eer_interpolates_between_roc_points():
    # reals {0.1, 0.7}, fakes {0.7, 0.9}: ROC (0,0) (0,.5) (.5,1) (1,1); the tie makes the
    # segment (0,.5)-(.5,1) cross FPR = FNR at its middle, (.25, .75). DeepfakeBench's nearest
    # ROC point would say 0.0.
    out = detection_metrics([0, 0, 1, 1], [0.1, 0.7, 0.7, 0.9], n_boot=0)
    assert out["eer"] == pytest.approx(0.25)
    assert out["auc"] == pytest.approx(0.875) == pytest.approx(roc_auc_score([0, 0, 1, 1], [0.1, 0.7, 0.7, 0.9]))


def test_tpr_at_one_percent_fpr_allows_two_of_200_false_alarms():
    reals = np.arange(200) / 1000  # 0.000 ... 0.199
    fakes = np.array([0.5, 0.3, 0.15, 0.05])
    labels = np.r_[np.zeros(200), np.ones(4)]
    out = detection_metrics(labels, np.r_[reals, fakes], n_boot=0)
    # threshold 0.198 admits 2 reals (FPR 1 %) and 2 fakes; the next fake (0.15) costs 49 reals
    assert out["tpr_at_1fpr"] == pytest.approx(0.5)
    assert out["auc"] == pytest.approx(roc_auc_score(labels, np.r_[reals, fakes]))


def test_video_aggregation_on_two_videos():
    labels = [1, 1, 0, 0]
    scores = [0.9, 0.3, 0.2, 0.6]
    videos = ["fake_a", "fake_a", "real_b", "real_b"]
    per_video = video_scores(labels, scores, videos)
    assert per_video["p_fake"].tolist() == pytest.approx([0.6, 0.4])
    assert per_video["n_frames"].tolist() == [2, 2]
    frame = detection_metrics(labels, scores, groups=videos, n_boot=50)
    video = video_detection_metrics(labels, scores, videos, n_boot=50)
    assert frame["auc"] == pytest.approx(3 / 4)  # 0.3 < 0.6 is the one misordered pair
    assert frame["acc"] == pytest.approx(2 / 4)
    assert video["auc"] == pytest.approx(1.0) and video["acc"] == pytest.approx(1.0)
    assert (video["n_real"], video["n_fake"]) == (1, 1)
    with pytest.raises(ValueError, match="both real and fake"):
        video_scores([1, 0], [0.1, 0.2], ["v", "v"])


def test_one_class_only_is_nan_with_reason():
    out = detection_metrics([1, 1, 1], [0.2, 0.7, 0.9], n_boot=20)
    assert np.isnan(out["auc"]) and np.isnan(out["eer"]) and np.isnan(out["auc_lo"])
    assert out["reason"] == "detection_no_reals"
    assert out["acc"] == pytest.approx(2 / 3)  # accuracy needs no second class
    assert detection_metrics([0, 0], [0.2, 0.7], n_boot=0)["reason"] == "detection_no_fakes"
    empty = detection_metrics([], [], n_boot=10)
    assert empty["reason"] == "no_samples" and np.isnan(empty["acc"])
    dropped = detection_metrics([0, 1, 1], [0.1, np.nan, 0.9], n_boot=0)
    assert dropped["n_dropped"] == 1 and dropped["auc"] == 1.0


def test_cluster_bootstrap_is_wider_than_frame_bootstrap():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1] * 10, 10)
    video_shift = np.repeat(rng.normal(0, 1.0, 20), 10)
    scores = 1 / (1 + np.exp(-(labels - 0.5 + video_shift + rng.normal(0, 0.1, 200))))
    videos = np.repeat(np.arange(20), 10)
    iid = detection_metrics(labels, scores, n_boot=300)
    clustered = detection_metrics(labels, scores, groups=videos, n_boot=300)
    assert iid["auc"] == clustered["auc"]
    assert clustered["auc_hi"] - clustered["auc_lo"] > 2 * (iid["auc_hi"] - iid["auc_lo"])


def test_under_attack_auc_on_reals_vs_adversarial_fakes():
    p_real = [0.1, 0.3, 0.2, 0.4]
    p_adv = [0.45, 0.05, 0.6, 0.25]  # the attack pushed some fakes below the reals
    out = under_attack_metrics(p_real, p_adv, real_videos=["r1", "r1", "r2", "r2"],
                               adv_videos=["r1", "r1", "f2", "f2"], n_boot=50)
    # fake > real pairs: .45 beats 4, .05 none, .6 all 4, .25 beats 2 -> 10 of 16
    assert out["frame_auc"] == pytest.approx(10 / 16)
    # videos (real and fake "r1" kept apart): reals .2 .3, fakes .25 .425 -> (1 + 2) / 4
    assert out["video_auc"] == pytest.approx(3 / 4)
    assert (out["video_n_real"], out["video_n_fake"]) == (2, 2)
    assert "video_auc" not in under_attack_metrics(p_real, p_adv, n_boot=0)


def test_detector_table_groups_by_target_with_video_level():
    scores = pd.DataFrame({"target": ["a"] * 4 + ["b"] * 4, "label": [1, 1, 0, 0] * 2,
                           "p_fake": [0.9, 0.3, 0.2, 0.6, 0.9, 0.8, 0.1, 0.2],
                           "video_id": ["f", "f", "r", "r"] * 2})
    table = detector_table(scores, n_boot=20).set_index("target")
    assert table.loc["a", "auc"] == pytest.approx(0.75) and table.loc["b", "auc"] == pytest.approx(1.0)
    assert table.loc["a", "video_auc"] == pytest.approx(1.0)
    no_videos = detector_table(scores.assign(video_id=""), n_boot=0)
    assert "video_auc" not in no_videos


def test_asr_both_denominators():
    frame = pd.DataFrame({
        "p_fake_clean": [0.9, 0.8, 0.7, 0.3, 0.95, 0.6],
        "p_fake_inversion": [0.9, 0.4, 0.8, 0.9, 0.7, 0.55],
        "p_fake_adv": [0.2, 0.1, 0.6, 0.1, 0.49, 0.5],
    })
    out = asr_denominators(frame, n_boot=100)
    # successes: samples 0 and 4; the target detected 5 of the 6 attacked fakes
    assert out["asr_detected"] == pytest.approx(2 / 5)
    assert out["asr_all"] == pytest.approx(2 / 6)
    assert (out["n_attacked"], out["n_detected"], out["n_success"]) == (6, 5, 2)
    flags = pd.DataFrame({"eligible": [True, True, False], "success": [True, False, False]})
    assert asr_denominators(flags, n_boot=0)["asr_all"] == pytest.approx(1 / 3)


def test_under_attack_table_per_cell_and_after_postprocessing():
    reals = pd.DataFrame({"target": ["t"] * 4, "p_fake": [0.1, 0.3, 0.2, 0.4], "video_id": ["r1", "r1", "r2", "r2"]})
    records = pd.DataFrame({
        "source": "s", "attack": "a", "target": "t", "video_id": ["f1", "f1", "f2", "f2"],
        "p_fake_clean": [0.9, 0.8, 0.7, 0.6], "p_fake_inversion": [0.9, 0.8, 0.7, 0.6],
        "p_fake_adv": [0.45, 0.05, 0.6, 0.25],
        "p_fake_adv_jpeg75": [0.95, 0.9, 0.8, 0.7],  # compression undid the attack
    })
    row = under_attack_table(records, reals, n_boot=20).iloc[0]
    assert row["frame_auc"] == pytest.approx(10 / 16) and row["video_auc"] == pytest.approx(3 / 4)
    assert row["asr_detected"] == pytest.approx(3 / 4) and row["asr_all"] == pytest.approx(3 / 4)
    after = under_attack_table(records, reals, adv_column="p_fake_adv_jpeg75", n_boot=20).iloc[0]
    assert after["frame_auc"] == pytest.approx(1.0) and after["asr_detected"] == pytest.approx(0.0)
