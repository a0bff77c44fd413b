import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from bench.explain import explain_figure, figure_columns, gradcam_maps, residual_map
from bench.types import Detector
from detectors.tiny import TinyCNN

SIZE, PATCH = 64, 16


def smooth_batch(n: int, g: torch.Generator) -> torch.Tensor:
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    return F.interpolate(coarse, size=(SIZE, SIZE), mode="bicubic", align_corners=False).clamp(0.1, 0.9)


def with_local_artifact(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Add a strong checkerboard in one PATCH x PATCH square per image; return images and masks."""
    n = len(x)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    checker = ((yy + xx) % 2).float() * 2 - 1
    top = torch.randint(0, SIZE - PATCH, (n,), generator=g)
    left = torch.randint(0, SIZE - PATCH, (n,), generator=g)
    mask = ((yy >= top.view(n, 1, 1)) & (yy < top.view(n, 1, 1) + PATCH)
            & (xx >= left.view(n, 1, 1)) & (xx < left.view(n, 1, 1) + PATCH))
    return (x + 0.15 * checker * mask.unsqueeze(1)).clamp(0, 1), mask


@pytest.fixture(scope="module")
def trained_tiny():
    """TinyCNN trained for a few seconds to spot a local checkerboard (fake) anywhere in the image."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    det = TinyCNN(width=8, input_size=SIZE, seed=0)
    opt = torch.optim.Adam(det.parameters(), lr=3e-3)
    for _ in range(120):
        real = smooth_batch(16, g)
        fake, _ = with_local_artifact(smooth_batch(16, g), g)
        logits = det(torch.cat([real, fake]))
        loss = F.cross_entropy(logits, torch.cat([torch.zeros(16), torch.ones(16)]).long())
        opt.zero_grad()
        loss.backward()
        opt.step()
    det.eval().requires_grad_(False)  # frozen, as detectors are in the benchmark
    return det


def test_trained_tiny_detects_and_gradcam_localises_the_artifact(trained_tiny):
    g = torch.Generator().manual_seed(123)
    real = smooth_batch(8, g)
    fake, mask = with_local_artifact(smooth_batch(8, g), g)
    with torch.no_grad():
        assert trained_tiny.p_fake(fake).min() > 0.8 and trained_tiny.p_fake(real).max() < 0.2
    maps = gradcam_maps(trained_tiny, fake)
    assert maps.shape == (8, SIZE, SIZE) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert (maps.reshape(8, -1).std(axis=1) > 0.05).all()  # non-constant per image
    inside = (maps * mask.numpy()).sum(axis=(1, 2)) / mask.numpy().sum(axis=(1, 2))
    outside = (maps * ~mask.numpy()).sum(axis=(1, 2)) / (~mask.numpy()).sum(axis=(1, 2))
    assert (inside > 2 * outside).all(), (inside, outside)


class TimmDetector(Detector):
    """A timm ResNet-18 (random weights) with a 2-way head, as the detector helpers wrap timm CNNs."""

    def __init__(self):
        super().__init__(input_size=SIZE)
        import timm

        torch.manual_seed(0)
        self.net = timm.create_model("resnet18", pretrained=False, num_classes=2)

    def classify(self, xn):
        return self.net(xn)

    def embed(self, xn):
        return self.net.forward_head(self.net.forward_features(xn), pre_logits=True)

    def cam_target_layers(self):
        return [self.net.layer4[-1]]


def test_gradcam_on_a_timm_cnn():
    det = TimmDetector().eval().requires_grad_(False)
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))  # resized inside to 64
    maps = gradcam_maps(det, x)
    assert maps.shape == (2, 96, 96)
    assert maps.min() >= 0.0 and maps.max() <= 1.0 and maps.std() > 0


@pytest.mark.parametrize("latent", [False, True])
def test_explain_figure_size_and_content(trained_tiny, tmp_path, latent):
    g = torch.Generator().manual_seed(5)
    n = 3
    orig, _ = with_local_artifact(smooth_batch(n, g), g)
    adv = (orig + 0.03 * torch.randn(orig.shape, generator=g)).clamp(0, 1)
    inversion = (orig * 0.98 + 0.01) if latent else None
    second = TinyCNN(width=8, input_size=SIZE, seed=1).eval()
    dets: dict[str, nn.Module] = {"tiny": trained_tiny, "tiny_b": second}
    out = explain_figure(orig, adv, dets, tmp_path / "fig" / "explain.png", inversion01=inversion,
                         titles=[f"s{i}" for i in range(n)], cell_px=120)
    columns = figure_columns(list(dets), latent)
    assert len(columns) == (8 if latent else 7)  # 3 or 4 image columns + 2 CAM columns per detector
    with Image.open(out) as im:
        assert im.size == (len(columns) * 120, n * 120)
        pixels = np.asarray(im.convert("RGB")).astype(float)
    assert pixels.std() > 20  # not a blank canvas


def test_residual_map_units():
    a = torch.zeros(1, 3, 4, 4)
    b = a.clone()
    b[0, 0, 1, 2] = 0.3  # one channel changed by 0.3 -> channel mean 0.1
    r = residual_map(b, a)
    assert r.shape == (1, 4, 4) and r[0, 1, 2].item() == pytest.approx(0.1) and r.sum().item() == pytest.approx(0.1)
