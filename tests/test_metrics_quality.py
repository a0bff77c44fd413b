import math

import pytest
import torch
import torchvision

from bench.metrics import quality
from bench.metrics.quality import (
    ALEXNET_FILE,
    LPIPSMetric,
    esnle,
    esnle_strips,
    lpips_available,
    psnr,
    round_uint8,
    ssim,
    truncate_uint8,
    tv_l1_mean,
    tv_paper,
)
from bench.registry import METRICS


def smooth_image(n: int = 256, seed: int = 0) -> torch.Tensor:
    """A smooth colour image (a few long-period sinusoids), (1,3,n,n), values inside [0.25, 0.75]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, n), torch.linspace(0, 1, n), indexing="ij")
    chans = []
    for c in range(3):
        a = torch.rand(4, generator=g)
        chans.append(0.5 + 0.15 * torch.sin(2 * math.pi * (2 * a[0] * xx + a[1] * yy) + c)
                     + 0.1 * torch.cos(2 * math.pi * (1.5 * a[2] * xx - 2 * a[3] * yy)))
    return torch.stack(chans)[None].double()


def test_tv_paper_matches_hand_computation():
    # one channel, 2x3, in 0-255 units:  [[0, 10, 30],
    #                                     [20, 20, 50]]
    # vertical pairs:   (20-0)^2 + (20-10)^2 + (50-30)^2 = 400 + 100 + 400 = 900, over (H-1)*W*C = 3 -> 300
    # horizontal pairs: 10^2 + 20^2 + 0^2 + 30^2 = 100 + 400 + 0 + 900 = 1400, over H*(W-1)*C = 4 -> 350
    img = torch.tensor([[[[0.0, 10, 30], [20, 20, 50]]]]) / 255
    assert tv_paper(img).tolist() == pytest.approx([650.0])
    # a second, all-zero channel doubles each count: 900/6 + 1400/8 = 150 + 175
    two = torch.cat([img, torch.zeros_like(img)], dim=1)
    assert tv_paper(two).tolist() == pytest.approx([325.0])
    # per image: a flat image in the batch scores 0 next to it
    assert tv_paper(torch.cat([img, torch.zeros_like(img)])).tolist() == pytest.approx([650.0, 0.0])
    # L1 variant: vertical |20|+|10|+|20| = 50 / 3, horizontal 10+20+0+30 = 60 / 4
    assert tv_l1_mean(img).tolist() == pytest.approx([50 / 3 + 15])


@pytest.mark.parametrize("sigma", [2, 5, 10, 20])
def test_esnle_recovers_added_gaussian_noise(sigma):
    # 384 px: with fewer patches the spread of the noise eigenvalues biases the estimate low
    # (about -2 % at 256 px, -1 % at 384 px, seeds 0-5)
    clean = smooth_image(384)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    estimate = esnle(clean + noise * sigma / 255)
    assert estimate.shape == (1,)
    assert estimate.item() == pytest.approx(sigma, rel=0.03)


def test_esnle_is_per_image_and_near_zero_on_smooth():
    clean = smooth_image(256)
    noisy = clean + torch.randn(clean.shape, generator=torch.Generator().manual_seed(0),
                                dtype=torch.float64) * 10 / 255
    both = esnle(torch.cat([clean, noisy]))
    assert both[0] < 0.1
    assert both[1] == pytest.approx(esnle(noisy).item())
    assert 9.5 < both[1] < 10.2


def test_esnle_strips_averages_two_halves_of_the_concatenated_frames():
    g = torch.Generator().manual_seed(1)
    a = smooth_image(256, seed=1) + torch.randn(1, 3, 256, 256, generator=g, dtype=torch.float64) * 4 / 255
    b = smooth_image(256, seed=2) + torch.randn(1, 3, 256, 256, generator=g, dtype=torch.float64) * 12 / 255
    # two frames side by side: the left strip is frame a, the right strip frame b
    expected = (esnle(a) + esnle(b)).item() / 2
    assert esnle_strips(torch.cat([a, b])).item() == pytest.approx(expected)
    assert 7.7 < expected < 8.1


def test_uint8_round_trips():
    x = torch.tensor([0.0, 0.5, 1 / 255 - 1e-6, 254.6 / 255, 1.0, 1.2, -0.1])
    assert (truncate_uint8(x) * 255).round().tolist() == [0, 127, 0, 254, 255, 255, 0]
    assert (round_uint8(x) * 255).round().tolist() == [0, 128, 1, 255, 255, 255, 0]
    levels = torch.arange(256, dtype=torch.float32) / 255  # exact 8-bit images are fixed points
    assert torch.equal(truncate_uint8(levels), levels)
    assert torch.equal(round_uint8(levels), levels)


def test_ssim_and_psnr_known_values():
    a = smooth_image(64).float()
    b = (a + 0.1).clamp(0, 1)
    assert psnr(a, b).tolist() == pytest.approx([20.0], abs=1e-3)  # MSE 0.01 -> 10*log10(1/0.01)
    assert ssim(a, a).tolist() == pytest.approx([1.0])
    assert 0.0 < ssim(a, b).item() < 1.0


def test_lpips_unavailable_without_trunk(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # hub dir becomes tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case something called torch.hub.set_dir
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url",
                        lambda *a, **k: pytest.fail("LPIPS tried to download"))
    ok, message = lpips_available()
    assert not ok
    assert ALEXNET_FILE in message and str(hub / "checkpoints") in message
    metric = METRICS.create("lpips")
    assert not metric.available and metric.message == message
    x = torch.rand(2, 3, 32, 32)
    assert torch.isnan(metric(x, x)).all() and metric(x, x).shape == (2,)


def test_lpips_available_path_with_a_trunk_file_made_in_the_test(tmp_path, monkeypatch):
    """Only here: a randomly initialised AlexNet saved under the expected name stands in for the real one."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # hub dir becomes tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case something called torch.hub.set_dir
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url",
                        lambda *a, **k: pytest.fail("LPIPS tried to download"))
    torch.manual_seed(0)
    trunk = torchvision.models.alexnet().state_dict()
    (hub / "checkpoints").mkdir(parents=True)
    torch.save(trunk, hub / "checkpoints" / ALEXNET_FILE)
    assert lpips_available()[0]
    # the real file's sha256 starts with 7be5be79; this stand-in does not, so by default it is refused
    refused = LPIPSMetric()
    assert not refused.available and "sha256" in refused.message
    metric = LPIPSMetric(verify_hash=False)
    assert metric.available
    assert torch.equal(metric.net.net.slice5[0].weight, trunk["features.10.weight"])
    assert torch.equal(metric.net.net.slice1[0].bias, trunk["features.0.bias"])
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    y = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert metric(x, x).tolist() == pytest.approx([0.0, 0.0], abs=1e-7)
    d = metric(x, y)
    assert d.shape == (2,) and (d > 0).all()
    # computed on [-1,1] inputs: same as calling the lpips network directly that way
    direct = metric.net(x * 2 - 1, y * 2 - 1).reshape(-1).double()
    assert torch.allclose(d, direct)


def test_registry_entries():
    for name in ("tv", "tv_l1", "esnle", "ssim", "psnr", "lpips"):
        assert name in METRICS
    x = smooth_image(32).float()
    assert METRICS.create("tv")(x).item() == pytest.approx(tv_paper(x).item())
    assert METRICS.create("psnr")(x, x).item() == math.inf
    assert quality.QualityMetric  # the shared interface of every registered metric


def test_esnle_chunks_large_batches_without_changing_results(monkeypatch):
    x = torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    whole = esnle(x)
    monkeypatch.setattr(quality, "_ESNLE_BYTES", 1)  # forces one image per chunk
    assert torch.equal(esnle(x), whole)
