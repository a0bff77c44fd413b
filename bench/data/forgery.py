"""Real face-forgery techniques for the demo world, on work views with 68 dlib landmarks.

- ``augment``: flip, small shift/scale/rotation (landmarks follow) and colour jitter;
- ``self_blend``: Self-Blended Images (Shiohara & Yamasaki, CVPR 2022): a colour- and
  geometry-shifted copy of the face blended back into itself through a blurred landmark-hull mask;
- ``face_swap``: a donor face aligned to the target's landmarks by a similarity transform,
  colour-matched (Reinhard mean/std in Lab inside the face) and blended (Poisson or feathered).

All functions take a ``numpy.random.Generator`` and are deterministic given it. Images are uint8
RGB; masks float32 in [0,1].
"""

from __future__ import annotations

import cv2
import numpy as np

SBI_BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # the SBI paper's blend-ratio choices


def hull_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """1 inside the convex hull of ``points`` (x, y), 0 outside."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(points.round().astype(np.int32)), 1)
    return mask.astype(np.float32)


def soften(mask: np.ndarray, rng: np.random.Generator, grow: tuple[int, int] = (-4, 3),
           blur: tuple[float, float] = (2.0, 5.0)) -> np.ndarray:
    """Randomly erode/dilate a binary mask by a few pixels, then blur its edge."""
    px = int(rng.integers(grow[0], grow[1] + 1))
    if px:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(px) + 1, 2 * abs(px) + 1))
        mask = (cv2.dilate if px > 0 else cv2.erode)(mask, kernel)
    sigma = float(rng.uniform(*blur))
    return np.clip(cv2.GaussianBlur(mask, (0, 0), sigma) * (mask.max() > 0), 0, 1)


def color_jitter(rgb: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Brightness, contrast, saturation and hue jitter."""
    x = rgb.astype(np.float32) / 255.0
    hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-6, 6) * strength) % 360.0
    hsv[..., 1] = np.clip(hsv[..., 1] * (1 + rng.uniform(-0.2, 0.2) * strength), 0, 1)
    x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    x = (x - 0.5) * (1 + rng.uniform(-0.15, 0.15) * strength) + 0.5 + rng.uniform(-0.08, 0.08) * strength
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def warp(rgb: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    return cv2.warpAffine(rgb, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def augment(rgb: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Flip (p=0.5), rotate +-8 deg, scale 0.92-1.08, shift +-4 % and colour-jitter a work view."""
    h, w = rgb.shape[:2]
    if rng.random() < 0.5:
        rgb = rgb[:, ::-1].copy()
        points = points.copy()
        points[:, 0] = (w - 1) - points[:, 0]  # the hull ignores point order, so no re-indexing
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-8, 8)), float(rng.uniform(0.92, 1.08)))
    matrix[:, 2] += rng.uniform(-0.04, 0.04, size=2) * (w, h)
    return color_jitter(warp(rgb, matrix), rng), _apply(matrix, points)


def self_blend(rgb: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An SBI forgery and its blending mask: source = jittered, resampled, slightly moved copy."""
    h, w = rgb.shape[:2]
    source = color_jitter(rgb, rng, strength=1.5)
    if rng.random() < 0.5:  # SBI's frequency cue: down- then up-sample the source
        factor = float(rng.uniform(0.5, 0.85))
        small = cv2.resize(source, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)
        source = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    centre = points.mean(axis=0)
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), 0.0, float(rng.uniform(0.95, 1.05)))
    matrix[:, 2] += rng.uniform(-0.03, 0.03, size=2) * (w, h)
    source = warp(source, matrix)
    mask = soften(hull_mask(points, (h, w)), rng) * float(rng.choice(SBI_BLEND_RATIOS))
    return blend(source, rgb, mask), mask


def reinhard_transfer(source: np.ndarray, target: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Match the Lab mean and std of ``source`` to ``target`` inside ``region`` (Reinhard 2001)."""
    src = cv2.cvtColor(source.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    tgt = cv2.cvtColor(target.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    inside = region > 0.5
    s_mean, s_std = src[inside].mean(0), src[inside].std(0) + 1e-3
    t_mean, t_std = tgt[inside].mean(0), tgt[inside].std(0)
    out = cv2.cvtColor((src - s_mean) * (t_std / s_std) + t_mean, cv2.COLOR_Lab2RGB)
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def face_swap(target: np.ndarray, target_points: np.ndarray, donor: np.ndarray, donor_points: np.ndarray,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The donor's face on the target's head, and the mask it was blended through."""
    h, w = target.shape[:2]
    inner = slice(17, 68)  # brows, nose, eyes, mouth: stable points for the alignment
    matrix, _ = cv2.estimateAffinePartial2D(donor_points[inner], target_points[inner], method=cv2.LMEDS)
    aligned = cv2.warpAffine(donor, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    region = hull_mask(target_points, (h, w)) * hull_mask(_apply(matrix, donor_points), (h, w))
    aligned = reinhard_transfer(aligned, target, region)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    core = cv2.erode(region, kernel)
    if rng.random() < 0.5:  # Poisson blending
        binary = (core > 0.5).astype(np.uint8) * 255
        x, y, bw, bh = cv2.boundingRect(binary)
        centre = (x + bw // 2, y + bh // 2)  # OpenCV places the ROI at centre - size // 2: no shift
        # OpenCV 5 overwrites the mask argument inside its ROI: hand it a copy
        cloned = cv2.seamlessClone(aligned, target, binary.copy(), centre, cv2.NORMAL_CLONE)
        # seamlessClone solves over the whole bounding rectangle, nudging pixels outside the mask;
        # keep only the masked pixels (the Poisson solution meets the target at the mask edge)
        hard = (binary > 0).astype(np.float32)
        return blend(cloned, target, hard), hard
    mask = soften(core, rng, grow=(-2, 0), blur=(2.0, 4.0))
    return blend(aligned, target, mask), mask


def blend(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    alpha = mask[..., None]
    out = source.astype(np.float32) * alpha + target.astype(np.float32) * (1 - alpha)
    return np.clip(out, 0, 255).round().astype(np.uint8)


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
