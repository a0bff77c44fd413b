"""Image-quality metrics of the paper's Table 1: TV, ESNLE, LPIPS, plus SSIM and PSNR.

All functions take float (B,3,H,W) batches in [0,1] and return one value per image, a (B,)
float64 tensor; averaging (per video, then over videos) is the caller's job. Definitions follow
the official evaluation code as recorded in REFERENCE.md section 5 and docs/metrics.md.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.registry import register_metric

# -- 8-bit storage round trips ----------------------------------------------------------------

# floor(k/255 * 255) can land on k - 1 in floating point; this slack (1e-4 of a grey level)
# makes truncation idempotent on images that already are 8-bit without changing anything else.
_TRUNC_SLACK = 1e-4


def truncate_uint8(x01: torch.Tensor) -> torch.Tensor:
    """What saving as an 8-bit PNG by truncation and reading back does: floor(x*255)/255.

    The official code saves images this way (``astype(uint8)`` truncates), and every metric is
    computed on the re-read files; this is the ``paper`` mode.
    """
    levels = torch.floor(x01.detach().double().clamp(0, 1) * 255 + _TRUNC_SLACK).clamp(0, 255)
    return (levels / 255).to(x01.dtype)


def round_uint8(x01: torch.Tensor) -> torch.Tensor:
    """The ``clean`` 8-bit round trip: round(x*255)/255 (what PIL's usual conversion does)."""
    levels = torch.round(x01.detach().double().clamp(0, 1) * 255)
    return (levels / 255).to(x01.dtype)


# -- Total variation -----------------------------------------------------------------------------

def tv_paper(x01: torch.Tensor) -> torch.Tensor:
    """TV of the official evaluation, per image, on the 0-255 scale.

    ``sum (x[i+1,j]-x[i,j])^2 / ((H-1) W C) + sum (x[i,j+1]-x[i,j])^2 / (H (W-1) C)``: squared
    differences, each direction averaged over its own number of pixel pairs.
    """
    x = x01.double() * 255
    dv = (x[:, :, 1:, :] - x[:, :, :-1, :]).pow(2).mean(dim=(1, 2, 3))
    dh = (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).mean(dim=(1, 2, 3))
    return dv + dh


def tv_l1_mean(x01: torch.Tensor) -> torch.Tensor:
    """Anisotropic L1 TV, per image, on the 0-255 scale: mean |vertical diff| + mean |horizontal diff|.

    Not the paper's metric (that is ``tv_paper``); offered because it is the usual textbook TV
    and is less dominated by a few strong edges than the squared version.
    """
    x = x01.double() * 255
    dv = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean(dim=(1, 2, 3))
    dh = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean(dim=(1, 2, 3))
    return dv + dh


# -- ESNLE: noise level from patch-covariance eigenvalues (Chen, Zhu, Heng, ICCV 2015) ---------------

_ESNLE_BYTES = 1 << 30


def esnle(x01: torch.Tensor, patch: int = 8, stride: int = 3) -> torch.Tensor:
    """Estimated noise standard deviation per image, in 0-255 units.

    The eigenvalues of the covariance of all ``patch`` x ``patch`` patches (every channel
    flattened, d = patch^2 * C) at ``stride`` are sorted ascending. Going from k = d down to 1,
    tau = mean of the k smallest; the first k at which as many of those k eigenvalues lie above
    tau as below (mean equals median: the tail looks like pure noise) gives sigma = sqrt(tau).
    """
    b, c, h, w = x01.shape
    n_patches = ((h - patch) // stride + 1) * ((w - patch) // stride + 1)
    per_image = c * patch * patch * max(n_patches, 1) * 8 * 3  # bytes: patches, centred copy, slack
    chunk = max(1, _ESNLE_BYTES // per_image)
    if b > chunk:  # bound memory for large batches / large images
        return torch.cat([esnle(x01[i:i + chunk], patch, stride) for i in range(0, b, chunk)])
    x = x01.double() * 255
    cols = F.unfold(x, kernel_size=patch, stride=stride)  # (B, d, n_patches)
    if cols.shape[-1] < 2:
        raise ValueError(f"image {tuple(x.shape[-2:])} too small for {patch}x{patch} patches")
    centred = cols - cols.mean(dim=2, keepdim=True)
    cov = centred @ centred.transpose(1, 2) / cols.shape[-1]
    eig = torch.linalg.eigvalsh(cov)  # ascending, (B, d)
    d = eig.shape[1]
    k = torch.arange(1, d + 1, dtype=eig.dtype)
    tau = eig.cumsum(dim=1) / k  # tau[:, k-1] = mean of the k smallest
    # in_head[k-1, j] says whether eigenvalue j is among the k smallest
    in_head = torch.arange(d).view(1, d) < k.view(d, 1)
    above = ((eig.unsqueeze(1) > tau.unsqueeze(2)) & in_head).sum(dim=2)
    below = ((eig.unsqueeze(1) < tau.unsqueeze(2)) & in_head).sum(dim=2)
    balanced = above == below  # (B, d); k = 1 is always balanced, so every row has a hit
    # the largest balanced k is where the search from d downwards stops
    k_star = d - 1 - torch.flip(balanced, dims=[1]).to(torch.int64).argmax(dim=1)
    chosen = tau.gather(1, k_star.view(b, 1)).squeeze(1)
    return chosen.clamp_min(0).sqrt()


def esnle_strips(x01: torch.Tensor, patch: int = 8, stride: int = 3) -> torch.Tensor:
    """ESNLE as the official evaluation applies it to a clip: one value for the whole batch.

    The frames of the batch are concatenated left to right into one (3, H, B*W) image, that
    image is cut into a left and a right half-width strip, ESNLE is estimated on each strip and
    the two estimates are averaged. Returns a 0-d tensor in 0-255 units. (With one frame the
    strips are simply its left and right halves.)
    """
    wide = torch.cat(list(x01), dim=-1).unsqueeze(0)  # (1, 3, H, B*W)
    half = wide.shape[-1] // 2
    strips = torch.cat([wide[..., :half], wide[..., half:2 * half]], dim=0)
    return esnle(strips, patch=patch, stride=stride).mean()


# -- SSIM / PSNR (scikit-image) ------------------------------------------------------------------

def _to_hwc(x01: torch.Tensor) -> np.ndarray:
    return x01.detach().double().cpu().permute(0, 2, 3, 1).numpy()


def ssim(a01: torch.Tensor, b01: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (scikit-image defaults, 7x7 window, colour channels averaged)."""
    from skimage.metrics import structural_similarity

    a, b = _to_hwc(a01), _to_hwc(b01)
    return torch.tensor([structural_similarity(x, y, channel_axis=-1, data_range=1.0)
                         for x, y in zip(a, b)], dtype=torch.float64)


def psnr(a01: torch.Tensor, b01: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB with data range 1 (inf for identical images)."""
    from skimage.metrics import peak_signal_noise_ratio

    a, b = _to_hwc(a01), _to_hwc(b01)
    with np.errstate(divide="ignore"):
        values = [peak_signal_noise_ratio(x, y, data_range=1.0) for x, y in zip(a, b)]
    return torch.tensor(values, dtype=torch.float64)


# -- LPIPS ---------------------------------------------------------------------------------------

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's ImageNet AlexNet, LPIPS's trunk


def alexnet_trunk_path() -> Path:
    """Where LPIPS expects its AlexNet trunk: the torch hub cache (honours TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def lpips_available() -> tuple[bool, str]:
    """Whether LPIPS can run offline, and a one-line message saying why not / which file is used."""
    path = alexnet_trunk_path()
    if path.is_file():
        return True, f"LPIPS AlexNet trunk: {path}"
    return False, (f"LPIPS n/a: AlexNet trunk weights not found; place {ALEXNET_FILE} (torchvision "
                   f"ImageNet AlexNet) in {path.parent}/")


def _sha256_prefix_matches(path: Path) -> bool:
    """torch hub file names carry a sha256 prefix (``-7be5be79.``); check the file against it."""
    match = re.search(r"-([a-f0-9]{6,})\.", path.name)
    if not match:
        return True
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest().startswith(match.group(1))


class LPIPSMetric:
    """LPIPS (AlexNet trunk, v0.1 linear heads from the ``lpips`` package) between two batches.

    The trunk is read only from the torch hub cache, never downloaded: the network is built with
    a placeholder trunk (``pnet_rand=True``, which makes no network access) and the cached
    torchvision AlexNet weights are then copied in. When the file is missing (or fails its
    sha256 check) the metric is unavailable: ``available`` is False, ``message`` names the file
    and folder, and calls return NaN per image rather than a number from a random trunk.
    """

    name = "lpips"

    def __init__(self, device: str | torch.device = "cpu", verify_hash: bool = True):
        self.device = torch.device(device)
        self.available, self.message = lpips_available()
        self.net = None
        if not self.available:
            return
        path = alexnet_trunk_path()
        if verify_hash and not _sha256_prefix_matches(path):
            self.available = False
            self.message = (f"LPIPS n/a: {path} does not match the sha256 in its name; replace it with "
                            f"torchvision's {ALEXNET_FILE}")
            return
        self.net = self._build(path).to(self.device)

    @staticmethod
    def _build(trunk_path: Path) -> torch.nn.Module:
        import lpips

        with warnings.catch_warnings():  # torchvision's `pretrained=` deprecation notice
            warnings.simplefilter("ignore")
            net = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
        state = torch.load(trunk_path, map_location="cpu", weights_only=True)
        # lpips splits torchvision's `features.<i>` into slices that keep the child name <i>
        slices = {name: module for s in ("slice1", "slice2", "slice3", "slice4", "slice5")
                  for name, module in getattr(net.net, s).named_children()}
        loaded = 0
        for key, value in state.items():
            parts = key.split(".")
            if parts[0] != "features" or parts[1] not in slices:
                continue
            getattr(slices[parts[1]], parts[2]).data.copy_(value)
            loaded += 1
        if loaded != 10:  # five convolutions, weight and bias each
            raise ValueError(f"{trunk_path} is not a torchvision AlexNet state dict "
                             f"({loaded} of 10 trunk tensors found)")
        return net.eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, a01: torch.Tensor, b01: torch.Tensor) -> torch.Tensor:
        if self.net is None:
            return torch.full((a01.shape[0],), float("nan"), dtype=torch.float64)
        a = a01.to(self.device, torch.float32) * 2 - 1
        b = b01.to(self.device, torch.float32) * 2 - 1
        return self.net(a, b).reshape(-1).double().cpu()


# -- registry entries: one object per metric with a uniform call -------------------------------------

@dataclass
class QualityMetric:
    """A registered quality metric. ``reference`` says what the second image is: ``None`` for
    no-reference metrics (TV, ESNLE: called as ``fn(adv)``), else the image compared with the
    adversarial (``fn(reference, adv)``): the original, or the inversion for latent attacks."""

    name: str
    fn: Callable[..., torch.Tensor]
    needs_reference: bool
    higher_is_better: bool
    message: str = ""

    @property
    def available(self) -> bool:
        return getattr(self.fn, "available", True)

    def __call__(self, adv01: torch.Tensor, reference01: torch.Tensor | None = None) -> torch.Tensor:
        if self.needs_reference:
            if reference01 is None:
                raise ValueError(f"metric {self.name!r} needs a reference image")
            return self.fn(reference01, adv01)
        return self.fn(adv01)


@register_metric("tv")
def tv_metric() -> QualityMetric:
    """Total variation of the official code (squared differences, 0-255 scale)."""
    return QualityMetric("tv", tv_paper, needs_reference=False, higher_is_better=False)


@register_metric("tv_l1")
def tv_l1_metric() -> QualityMetric:
    """Anisotropic mean-absolute total variation (0-255 scale)."""
    return QualityMetric("tv_l1", tv_l1_mean, needs_reference=False, higher_is_better=False)


@register_metric("esnle")
def esnle_metric(patch: int = 8, stride: int = 3) -> QualityMetric:
    """Noise-level estimate of Chen, Zhu, Heng (ICCV 2015), sigma in 0-255 units."""
    return QualityMetric("esnle", lambda x: esnle(x, patch=patch, stride=stride), needs_reference=False,
                         higher_is_better=False)


@register_metric("lpips")
def lpips_metric(device: str = "cpu", verify_hash: bool = True) -> QualityMetric:
    """LPIPS AlexNet v0.1; n/a (NaN) without the cached AlexNet trunk."""
    fn = LPIPSMetric(device=device, verify_hash=verify_hash)
    return QualityMetric("lpips", fn, needs_reference=True, higher_is_better=False, message=fn.message)


@register_metric("ssim")
def ssim_metric() -> QualityMetric:
    """SSIM (scikit-image, data range 1)."""
    return QualityMetric("ssim", ssim, needs_reference=True, higher_is_better=True)


@register_metric("psnr")
def psnr_metric() -> QualityMetric:
    """PSNR in dB (scikit-image, data range 1)."""
    return QualityMetric("psnr", psnr, needs_reference=True, higher_is_better=True)


__all__ = [
    "ALEXNET_FILE",
    "LPIPSMetric",
    "QualityMetric",
    "alexnet_trunk_path",
    "esnle",
    "esnle_strips",
    "lpips_available",
    "psnr",
    "round_uint8",
    "ssim",
    "truncate_uint8",
    "tv_l1_mean",
    "tv_paper",
]
