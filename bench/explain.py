"""Counterfactual-trace figures: what the attack changed and where each detector looks.

``gradcam_maps`` runs Grad-CAM (the ``grad-cam`` package) for the fake class on a detector's
``cam_target_layers()``. ``explain_figure`` writes one PNG grid: one row per sample, columns

    original | inversion (latent attacks only) | adversarial | amplified |residual|
    | for each detector: Grad-CAM on original, Grad-CAM on adversarial

with the detector's p_fake printed over each Grad-CAM panel. The residual is taken against the
inversion for latent attacks (the counterfactual change the latent walk made; the inversion
error is not the attack's doing) and against the original otherwise, averaged over colour
channels and stretched per sample so its maximum is white; the panel title gives that maximum
in 0-255 units.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bench.types import FAKE, Detector


def cam_unavailable(detector: Detector) -> str | None:
    """Why Grad-CAM cannot run on ``detector``, in words, or None when it can.

    grad-cam reads the model's device from its first parameter and hooks ``cam_target_layers()``;
    a detector with no parameters or no target layer cannot be explained."""
    try:
        layers = list(detector.cam_target_layers())
    except NotImplementedError:
        return "it names no cam_target_layers()"
    if not layers:
        return "its cam_target_layers() is empty"
    if next(detector.parameters(), None) is None:
        return "it has no parameters (Grad-CAM reads the device from the first one)"
    return None


def gradcam_maps(detector: Detector, x01: torch.Tensor, target_class: int = FAKE) -> np.ndarray:
    """Grad-CAM of ``target_class`` (default: fake) per image: (N,H,W) float32 in [0,1], at the
    input's resolution (grad-cam min-max scales each map; an all-zero map stays zero)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    was_training = detector.training
    detector.eval()
    # Frozen detectors have no parameter gradients; an input that requires grad keeps the graph
    # through the target layer so grad-cam's hooks see its gradient.
    x = x01.detach().float().clone().requires_grad_(True)
    try:
        with GradCAM(model=detector, target_layers=detector.cam_target_layers()) as cam:
            maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(target_class)] * len(x))
    finally:
        detector.train(was_training)
    return np.clip(np.asarray(maps, dtype=np.float32), 0.0, 1.0)


def residual_map(adv01: torch.Tensor, reference01: torch.Tensor) -> torch.Tensor:
    """|adv - reference| averaged over colour channels: (N,H,W) in [0,1] units."""
    return (adv01.detach().float() - reference01.detach().float()).abs().mean(dim=1)


def figure_columns(detector_names: Sequence[str], has_inversion: bool) -> list[str]:
    """Column headers of ``explain_figure``, left to right."""
    cols = ["original"] + (["inversion"] if has_inversion else []) + ["adversarial", "|residual|"]
    for name in detector_names:
        cols += [f"{name}: CAM original", f"{name}: CAM adversarial"]
    return cols


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def explain_figure(original01: torch.Tensor, adversarial01: torch.Tensor, detectors: dict[str, Detector],
                   out_png: str | Path, inversion01: torch.Tensor | None = None,
                   titles: Sequence[str] | None = None, cell_px: int = 160, dpi: int = 100) -> Path:
    """Write the explanation grid for N samples to ``out_png`` and return its path.

    ``original01``, ``adversarial01`` (and ``inversion01``) are (N,3,H,W) in [0,1];
    ``detectors`` maps a display name to a detector, source first by convention; ``titles``
    labels the rows (e.g. sample ids). The image is exactly ``len(columns) * cell_px`` by
    ``N * cell_px`` pixels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(original01)
    if adversarial01.shape != original01.shape or (inversion01 is not None and inversion01.shape != original01.shape):
        raise ValueError("original, adversarial and inversion batches must have the same shape")
    reference = inversion01 if inversion01 is not None else original01
    residual = residual_map(adversarial01, reference)
    peak = residual.flatten(1).amax(dim=1).clamp_min(1e-12)
    residual_shown = (residual / peak.view(-1, 1, 1)).cpu().numpy()

    cams, p_fakes = {}, {}
    for name, det in detectors.items():
        cams[name] = (gradcam_maps(det, original01), gradcam_maps(det, adversarial01))
        with torch.no_grad():
            p_fakes[name] = (det.p_fake(original01).cpu(), det.p_fake(adversarial01).cpu())

    columns = figure_columns(list(detectors), inversion01 is not None)
    fig = Figure(figsize=(len(columns) * cell_px / dpi, n * cell_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, len(columns), squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.22 / n, wspace=0.04, hspace=0.3)
    fontsize = max(5, cell_px // 24)
    ref_name = "inv" if inversion01 is not None else "orig"
    for i in range(n):
        panels: list[tuple[np.ndarray, str, dict]] = [(_hwc(original01[i]), "original", {})]
        if inversion01 is not None:
            panels.append((_hwc(inversion01[i]), "inversion", {}))
        panels.append((_hwc(adversarial01[i]), "adversarial", {}))
        panels.append((residual_shown[i], f"|adv-{ref_name}| max {peak[i].item() * 255:.1f}/255",
                       {"cmap": "inferno", "vmin": 0.0, "vmax": 1.0}))
        for name in detectors:
            for which, image in ((0, original01[i]), (1, adversarial01[i])):
                label = "orig" if which == 0 else "adv"
                overlay = _overlay(_hwc(image), cams[name][which][i])
                panels.append((overlay, f"{name} {label} p_fake={p_fakes[name][which][i].item():.2f}", {}))
        for j, (img, title, kw) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(img, interpolation="nearest", **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=fontsize, pad=2)
        if titles is not None:
            axes[i, 0].set_ylabel(str(titles[i]), fontsize=fontsize)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return out


def _overlay(rgb: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a [0,1] heat map (jet colour map) over an RGB image."""
    from matplotlib import colormaps

    heat = colormaps["jet"](cam)[..., :3]
    return np.clip((1 - alpha) * rgb + alpha * heat, 0.0, 1.0)
