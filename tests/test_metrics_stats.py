import numpy as np
import pytest

from bench.metrics.stats import bootstrap_ci, bootstrap_ratio_ci


def test_ci_contains_true_mean_and_is_deterministic():
    rng = np.random.default_rng(1)
    values = rng.normal(3.0, 1.0, size=400)
    mean, lo, hi = bootstrap_ci(values, seed=7)
    assert mean == pytest.approx(values.mean())
    assert lo < 3.0 < hi
    # standard error ~ 1/sqrt(400) = 0.05, so a 95 % interval is ~0.2 wide
    assert 0.14 < hi - lo < 0.26
    assert bootstrap_ci(values, seed=7) == (mean, lo, hi)
    assert bootstrap_ci(values, seed=8) != (mean, lo, hi)


def test_group_resampling_is_wider_on_clustered_data():
    rng = np.random.default_rng(0)
    n_videos, frames = 20, 14
    video_effect = rng.normal(0.0, 1.0, size=n_videos)  # frames of a video share this offset
    values = np.repeat(video_effect, frames) + rng.normal(0.0, 0.1, size=n_videos * frames)
    groups = np.repeat([f"v{i}" for i in range(n_videos)], frames)
    m1, lo1, hi1 = bootstrap_ci(values, seed=0)
    m2, lo2, hi2 = bootstrap_ci(values, groups=groups, seed=0)
    assert m1 == m2  # grouping changes the interval, not the estimate
    # i.i.d. resampling thinks there are 280 independent values; there are really 20
    assert (hi2 - lo2) > 2.5 * (hi1 - lo1)


def test_ratio_ci_matches_hand_count_and_drops_nan():
    success = np.array([1, 0, 1, 1, 0, 0, np.nan])
    eligible = np.array([1, 1, 1, 1, 0, 0, 1])
    est, lo, hi = bootstrap_ratio_ci(success, eligible, seed=3)
    assert est == pytest.approx(3 / 4)
    assert 0.0 <= lo <= est <= hi <= 1.0
    assert all(np.isnan(bootstrap_ci([np.nan, np.nan])))
    assert all(np.isnan(bootstrap_ci([])))


def test_constant_values_give_zero_width():
    assert bootstrap_ci(np.full(10, 2.5), groups=np.arange(10) // 2) == (2.5, 2.5, 2.5)
