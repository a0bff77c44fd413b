import numpy as np
import pandas as pd
import pytest
import torch

from bench.metrics.quality import esnle
from bench.metrics.unavailable import (
    esnle_computable,
    esnle_half_strips_or_nan,
    esnle_or_nan,
    esnle_patch_count,
    footnotes,
    with_reason,
)
from bench.report import to_markdown


def _noisy(size: int, sigma: float = 5 / 255, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0.3, 0.7, size).view(1, 1, 1, size).expand(2, 3, size, size)
    return (ramp + sigma * torch.randn(2, 3, size, size, generator=g)).clamp(0, 1)


def test_esnle_on_32px_is_na_with_reason():
    x = _noisy(32)
    # 32 px: 9 x 9 = 81 patches for a 192-dimensional covariance; the raw estimator says ~0
    assert esnle_patch_count(32, 32) == 81 and not esnle_computable(32, 32)
    assert esnle(x).max().item() < 1e-3  # what used to be printed as 0.000
    values, reasons = esnle_or_nan(x)
    assert np.isnan(values).all() and list(reasons) == ["esnle_too_few_patches"] * 2
    values, reasons = esnle_half_strips_or_nan(x)  # strips 32 x 16: 27 patches
    assert np.isnan(values).all() and list(reasons) == ["esnle_too_few_patches"] * 2


def test_esnle_on_a_large_enough_image_is_unchanged():
    x = _noisy(128)  # 41 x 41 = 1681 patches > 192
    values, reasons = esnle_or_nan(x)
    np.testing.assert_allclose(values, esnle(x).numpy())
    assert list(reasons) == ["", ""]
    assert 4.0 < values.mean() < 5.5  # sigma 5 grey levels, biased a little low at 128 px
    strips, _ = esnle_half_strips_or_nan(x)  # 128 x 64 strips: 41 x 19 = 779 patches
    assert np.isfinite(strips).all()


def test_table_prints_na_and_footnote_never_zero():
    frame = pd.DataFrame({"attack": ["a"] * 4})
    frame["q_esnle_adv"], frame["q_esnle_adv_reason"] = with_reason([1.5, 0.0, 0.0, 2.5], [True, False, False, True],
                                                                    "esnle_too_few_patches")
    frame["q_lpips"] = np.nan  # a column without reasons
    assert frame["q_esnle_adv"].isna().tolist() == [False, True, True, False]
    assert frame["q_esnle_adv_reason"].tolist() == ["", "esnle_too_few_patches", "esnle_too_few_patches", ""]
    table = pd.DataFrame({"ESNLE adv": [float("nan"), 0.0, frame["q_esnle_adv"].mean()]}, index=["x", "y", "z"])
    cells = [line.split("|")[2].strip() for line in to_markdown(table, digits=3, bold=False).splitlines()[2:]]
    assert cells == ["n/a", "0.000", "2.000"]  # n/a, a real zero, and the mean leaves the NaNs out
    notes = footnotes(frame, {"q_esnle_adv": "ESNLE adv", "q_lpips": "LPIPS", "absent": "X"})
    assert notes[0].startswith("ESNLE adv: n/a for 2 of 4 samples (esnle_too_few_patches: image too small")
    assert notes[1].startswith("LPIPS: n/a for 4 of 4 samples (unknown")
    assert len(notes) == 2


def test_with_reason_checks_lengths():
    values, reasons = with_reason(torch.tensor([1.0, 2.0]), torch.tensor([True, False]), "id_no_face")
    assert values[0] == 1.0 and np.isnan(values[1]) and list(reasons) == ["", "id_no_face"]
    with pytest.raises(ValueError):
        with_reason([1.0], [True, False], "x")
