import pytest
import torch

from bench.errors import UserError
from bench.postprocess import (
    get_postprocess,
    known_names,
    register_postprocess,
    validate_postprocess,
)

SIZE = 64


def _smooth() -> torch.Tensor:
    """Two smooth colour images on the 8-bit grid (ramps and a slow sinusoid)."""
    i = torch.arange(SIZE, dtype=torch.float32)
    yy, xx = torch.meshgrid(i, i, indexing="ij")
    r = 0.3 + 0.4 * xx / SIZE
    g = 0.5 + 0.15 * torch.sin(2 * torch.pi * yy / SIZE)
    b = 0.2 + 0.3 * (xx + yy) / (2 * SIZE)
    img = torch.stack([r, g, b]).unsqueeze(0)
    return (torch.cat([img, img.flip(-1)]) * 255).round() / 255


def _checker(amplitude: float) -> torch.Tensor:
    i = torch.arange(SIZE)
    return amplitude * (1 - 2 * ((i.view(-1, 1) + i.view(1, -1)) % 2)).float().expand(1, 3, SIZE, SIZE)


def nyquist(x: torch.Tensor) -> torch.Tensor:
    """Amplitude of the one-pixel checkerboard component per image, in grey levels (mean over
    channels of |<x, checker>| / #pixels)."""
    return ((x * _checker(1.0)).mean(dim=(-2, -1)).abs() * 255).mean(dim=1)


def test_jpeg75_removes_a_checkerboard_but_keeps_a_smooth_image():
    smooth = _smooth()
    attacked = smooth + _checker(2 / 255)
    before = nyquist(attacked)
    assert before.tolist() == pytest.approx([2.0, 2.0], abs=0.05)
    jpeg75 = get_postprocess("jpeg75")
    after = nyquist(jpeg75(attacked))
    assert (after < 0.1 * before).all()  # > 90 % of the checkerboard's amplitude is gone
    # the smooth image itself survives: mean change ~1.2 grey levels
    assert (jpeg75(smooth) - smooth).abs().mean().item() * 255 < 1.5
    # at quality 90 the step of the highest-frequency luma coefficient is small enough that the
    # same checkerboard survives (measured 2.05 grey levels)
    assert (nyquist(get_postprocess("jpeg90")(attacked)) > 1.5).all()
    assert torch.equal(jpeg75(attacked), jpeg75(attacked))  # deterministic
    assert jpeg75(attacked).shape == attacked.shape
    assert torch.equal((jpeg75(attacked) * 255).round() / 255, jpeg75(attacked))  # 8-bit grid


def test_jpeg_quality_is_real_compression():
    smooth = _smooth()
    noisy = (smooth + 0.05 * torch.randn(smooth.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    err = {q: (get_postprocess(f"jpeg{q}")(noisy) - noisy).abs().mean().item() for q in (30, 75, 90, 100)}
    assert err[30] > err[75] > err[90] > err[100] > 0


def test_resize_half_removes_a_checkerboard():
    smooth = _smooth()
    attacked = smooth + _checker(2 / 255)
    resized = get_postprocess("resize0.5")(attacked)
    assert (nyquist(resized) < 0.05).all()
    assert (resized - get_postprocess("resize0.5")(smooth)).abs().max().item() * 255 <= 1.0 + 1e-4
    assert (resized - smooth).abs().mean().item() * 255 < 1.0


def test_unknown_and_out_of_range_names_are_user_errors():
    with pytest.raises(UserError, match="Did you mean 'jpeg75'"):
        get_postprocess("jepg75")
    with pytest.raises(UserError, match="quality must be 1-100"):
        get_postprocess("jpeg0")
    with pytest.raises(UserError, match="strictly between 0 and 1"):
        get_postprocess("resize2")
    with pytest.raises(UserError, match="unknown postprocess 'blur'"):
        validate_postprocess(["jpeg90", "blur"])


def test_custom_operation_registers_by_name():
    @register_postprocess("invert_for_test")
    def invert(x01: torch.Tensor) -> torch.Tensor:
        return 1 - x01

    assert "invert_for_test" in known_names()
    assert torch.equal(get_postprocess("invert_for_test")(torch.zeros(1, 3, 2, 2)), torch.ones(1, 3, 2, 2))
