"""Per-sample image-quality and identity measurements of one adversarial shard.

The runner calls ``QualityMeter.measure`` once per (source, attack, shard) on the 8-bit round
tripped images it stored. Which image is compared with the adversarial follows the metric mode:

- ``paper``: LPIPS against the *inversion* for latent attacks and against the original
  otherwise (what the official evaluation does); ESNLE per frame on its two half-width strips
  (the paper-mode view replaces it by one estimate per video over its successful frames,
  ``bench.metrics.file_esnle``, added when the runner merges the records).
- ``clean``: LPIPS against the original for every attack; ESNLE on the whole image.

SSIM, PSNR and identity always compare with the original. Columns are ``q_<metric>`` for
reference metrics and ``q_<metric>_orig`` / ``q_<metric>_adv`` for no-reference metrics.

No silent numbers (``bench.metrics.unavailable``): ESNLE on an image with fewer 8x8 patches
than its covariance has dimensions, and LPIPS without its AlexNet trunk, store NaN and a reason
code in ``<column>_reason``; tables print n/a with a footnote.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.config import MetricsSpec
from bench.errors import UserError
from bench.metrics.quality import esnle
from bench.metrics.unavailable import esnle_half_strips_or_nan, esnle_or_nan
from bench.progress import say
from bench.registry import METRICS, UnknownNameError
from bench.types import Attack


def esnle_half_strips(x01: torch.Tensor) -> torch.Tensor:
    """Per image, the mean ESNLE of its left and right half-width strips (the official
    evaluation's strip estimate, applied to one frame)."""
    half = x01.shape[-1] // 2
    strips = torch.cat([x01[..., :half], x01[..., half:2 * half]], dim=0)
    sigma = esnle(strips)
    return (sigma[: len(x01)] + sigma[len(x01):]) / 2


class QualityMeter:
    def __init__(self, spec: MetricsSpec, device: torch.device, quiet: bool = False):
        self.spec = spec
        self.metrics = {}
        for name in spec.quality:
            kwargs = {"device": str(device)} if name == "lpips" else {}
            try:
                metric = METRICS.create(name, **kwargs)
            except UnknownNameError as exc:
                raise UserError(f"metrics.quality: {exc}") from None
            if not metric.available:  # e.g. LPIPS without its AlexNet trunk: n/a, and say why
                say(f"[yellow]{metric.message}[/yellow]", quiet)
            self.metrics[name] = metric
        self.identity = None
        if spec.identity and spec.identity != "none":
            from bench.metrics.identity import create_id_backend

            try:
                self.identity = create_id_backend(spec.identity, **spec.identity_options)
            except UnknownNameError as exc:
                raise UserError(f"metrics.identity: {exc}") from None

    def measure(self, orig01: torch.Tensor, adv01: torch.Tensor, inversion01: torch.Tensor | None,
                attack: Attack) -> dict[str, np.ndarray]:
        paper = self.spec.mode == "paper"
        lpips_reference = inversion01 if (paper and attack.is_latent and inversion01 is not None) else orig01
        columns: dict[str, np.ndarray] = {}
        for name, metric in self.metrics.items():
            if metric.needs_reference:
                reference = lpips_reference if name == "lpips" else orig01
                columns[f"q_{name}"] = _np(metric(adv01, reference))
                if name == "lpips":
                    columns["q_lpips_reason"] = np.where(np.isnan(columns["q_lpips"]), "lpips_no_trunk", "").astype(object)
            elif name == "esnle":
                estimate = esnle_half_strips_or_nan if paper else esnle_or_nan
                for which, images in (("orig", orig01), ("adv", adv01)):
                    columns[f"q_esnle_{which}"], columns[f"q_esnle_{which}_reason"] = estimate(images)
            else:
                columns[f"q_{name}_orig"] = _np(metric(orig01))
                columns[f"q_{name}_adv"] = _np(metric(adv01))
        if self.identity is not None:
            from bench.metrics.identity import id_retention

            result = id_retention(self.identity, orig01, adv01)
            columns["q_id_similarity"] = _np(result["similarity"])
            columns["q_id_same"] = result["same"].cpu().numpy().astype(bool)
            columns["q_id_backend"] = np.array([self.identity.name] * len(orig01))
        return columns


def _np(values: torch.Tensor) -> np.ndarray:
    return values.detach().double().cpu().numpy().reshape(-1)
