import numpy as np
import pandas as pd
import pytest

from bench.metrics.asr import asr_summary, success_flags


def test_success_rule_matches_hand_computation():
    p_clean = [0.9, 0.8, 0.7, 0.3, 0.95, 0.6]
    p_inv = [0.9, 0.4, 0.8, 0.9, 0.7, 0.55]
    p_adv = [0.2, 0.1, 0.6, 0.1, 0.49, 0.5]
    eligible, inv_fake, success = success_flags(p_clean, p_inv, p_adv)
    assert eligible.tolist() == [True, True, True, False, True, True]
    assert inv_fake.tolist() == [True, False, True, True, True, True]
    # sample 1: inversion already real -> no success; 3: not eligible; 5: p_adv == .5 is not < .5
    assert success.tolist() == [True, False, False, False, True, False]


def test_both_denominators_and_interval():
    frame = pd.DataFrame({
        "p_fake_clean": [0.9, 0.8, 0.7, 0.3, 0.95, 0.6],
        "p_fake_inversion": [0.9, 0.4, 0.8, 0.9, 0.7, 0.55],
        "p_fake_adv": [0.2, 0.1, 0.6, 0.1, 0.49, 0.5],
        "video_id": ["a", "a", "b", "b", "c", "c"],
    })
    e, i, s = success_flags(frame.p_fake_clean, frame.p_fake_inversion, frame.p_fake_adv)
    frame["eligible"], frame["inversion_fake"], frame["success"] = e, i, s
    out = asr_summary(frame, n_boot=500)
    assert out["asr"] == pytest.approx(2 / 5)  # 2 successes over 5 originals detected as fake
    assert out["asr_inv_denominator"] == pytest.approx(2 / 5)  # 5 inversions detected as fake
    assert out["n_eligible"] == 5 and out["n_success"] == 2 and out["n_inversion_fake"] == 5
    assert 0 <= out["asr_lo"] <= out["asr"] <= out["asr_hi"] <= 1
    frame.loc[0, "p_fake_inversion"] = 0.1  # fewer fake inversions changes only the official ratio
    frame["inversion_fake"] = frame.p_fake_inversion > 0.5
    frame["success"] = frame.eligible & frame.inversion_fake & (frame.p_fake_adv < 0.5)
    out = asr_summary(frame, n_boot=100)
    assert out["asr"] == pytest.approx(1 / 5) and out["asr_inv_denominator"] == pytest.approx(1 / 4)


def test_no_eligible_sample_gives_nan():
    frame = pd.DataFrame({"eligible": [False], "inversion_fake": [False], "success": [False], "video_id": ["v"]})
    assert np.isnan(asr_summary(frame)["asr"])


def test_tables_bold_the_best_value_only_where_values_differ():
    from bench.report import to_latex, to_markdown

    frame = pd.DataFrame({"a": [10.0, 30.0], "b": [0.0, 0.0]}, index=pd.Index(["x", "y"], name="source"))
    md = to_markdown(frame)
    assert "| y | **30.0** | 0.0 |" in md and "**0.0**" not in md
    tex = to_latex(frame)
    assert "\\textbf{30.0}" in tex and "\\textbf{0.0}" not in tex and "\\toprule" in tex
