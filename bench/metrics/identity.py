"""Identity retention: does the adversarial face still show the same person as the original?

Three face-recognition backends behind one interface (``IDBackend``):

- ``irse50``: the pSp/e4e IR-SE50 (``model_ir_se50.pth``), as the official evaluation uses it:
  crop rows 35:223, cols 32:220 of the 256 px image, adaptive-average-pool to 112, L2-normalised
  512-d embedding; same identity if cosine > 0.75.
- ``arcface``: an insightface ArcFace ONNX recognition model on 112x112 crops aligned with
  ``face_align.norm_crop``; same identity if cosine > ``threshold`` (default 0.28). Needs
  onnxruntime.
- ``dlib``: dlib's 128-d ResNet face descriptor (ships offline with face-recognition-models);
  same person if Euclidean distance < 0.6. The default when no other weights are configured.

``id_retention(backend, orig01, adv01)`` gives the fraction of retained identities and the mean
similarity; images are float (B,3,H,W) in [0,1].
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import UserError
from bench.metrics.dlib_descriptors import DescriptorPool, face_chip
from bench.registry import Registry

ID_BACKENDS = Registry("id_backends", ())
register_id_backend = ID_BACKENDS.register


class IDBackend:
    """Embeds faces and decides whether two embeddings show the same person.

    ``similarity`` is oriented so that larger means more alike, and ``same(sim)`` is
    ``sim > threshold``. Cosine backends report the cosine; the dlib backend reports the
    negative Euclidean distance (so its threshold is -0.6).
    """

    name: str = "id"
    threshold: float = 0.0
    similarity_kind: str = "cosine"

    def embed(self, x01: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def embed_pair(self, orig01: torch.Tensor, adv01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings of an original batch and its adversarial counterpart."""
        return self.embed(orig01), self.embed(adv01)

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.cosine_similarity(a.double(), b.double(), dim=1)

    def same(self, sim: torch.Tensor) -> torch.Tensor:
        return sim > self.threshold


def id_retention(backend: IDBackend, orig01: torch.Tensor, adv01: torch.Tensor) -> dict[str, Any]:
    """Identity retention of ``adv01`` with respect to ``orig01`` (both (B,3,H,W) in [0,1]).

    Returns ``fraction`` (share of pairs judged the same person), ``mean_similarity``,
    ``backend``, ``threshold``, ``similarity_kind`` and the per-sample tensors ``similarity``
    (B,) and ``same`` (B,) bool.
    """
    with torch.no_grad():
        e_orig, e_adv = backend.embed_pair(orig01, adv01)
        sim = backend.similarity(e_orig, e_adv).cpu()
    same = backend.same(sim)
    return {
        "fraction": float(same.double().mean()) if len(same) else float("nan"),
        "mean_similarity": float(sim.mean()) if len(sim) else float("nan"),
        "backend": backend.name,
        "threshold": backend.threshold,
        "similarity_kind": backend.similarity_kind,
        "similarity": sim,
        "same": same,
    }


def to_uint8_rgb(x01: torch.Tensor) -> list[np.ndarray]:
    """(B,3,H,W) in [0,1] -> list of contiguous HxWx3 uint8 RGB arrays (what dlib and cv2 read)."""
    arr = (x01.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [np.ascontiguousarray(a) for a in arr]


# -- IR-SE50 ---------------------------------------------------------------------------------

# The official crop of a 256 px face image (rows, cols), from pSp's ID loss.
IRSE50_CROP_256 = ((35, 223), (32, 220))


def irse50_crop(x01: torch.Tensor, size: int = 112) -> torch.Tensor:
    """Official IR-SE50 input: [-1,1], rows 35:223 and cols 32:220 of a 256 px image, average-
    pooled to ``size``. For other image sizes the crop window is scaled proportionally (rows
    round(35 H/256) : round(223 H/256), likewise for columns), then pooled to ``size``."""
    h, w = x01.shape[-2:]
    (r0, r1), (c0, c1) = IRSE50_CROP_256
    rows = slice(round(r0 * h / 256), round(r1 * h / 256))
    cols = slice(round(c0 * w / 256), round(c1 * w / 256))
    crop = x01[:, :, rows, cols] * 2 - 1
    return F.adaptive_avg_pool2d(crop, (size, size))


class IRSE50Backend(IDBackend):
    """pSp/e4e IR-SE50 face embeddings (``model_ir_se50.pth``); cosine > 0.75 is the same person."""

    name = "irse50"

    def __init__(self, weights: str | Path | None = None, threshold: float = 0.75, device: str = "cpu",
                 model: nn.Module | None = None):
        self.threshold = float(threshold)
        self.device = torch.device(device)
        if model is None:
            model = self._load(weights)
        self.model = model.to(self.device).eval().requires_grad_(False)

    @staticmethod
    def _load(weights: str | Path | None) -> nn.Module:
        if weights is None:
            raise UserError("ID backend 'irse50' needs weights=PATH to pSp's model_ir_se50.pth "
                            "(or use the offline 'dlib' backend)")
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UserError(f"IR-SE50 weights not found: {path}; pass the path of pSp's model_ir_se50.pth")
        from bench.checkpoint_load import safe_torch_load
        from bench.models.irse import Backbone  # lazy: only this backend needs the network code

        net = Backbone(input_size=112, num_layers=50, mode="ir_se")
        state = safe_torch_load(path)  # weights-only; one clear line for a corrupt, safetensors or pickled-code file
        try:
            net.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise UserError(f"{path} is not an IR-SE50 state dict ({str(exc).splitlines()[0]}); pass pSp's "
                            "model_ir_se50.pth") from None
        return net

    @torch.no_grad()
    def embed(self, x01: torch.Tensor) -> torch.Tensor:
        feats = self.model(irse50_crop(x01.to(self.device, torch.float32)))
        return F.normalize(feats.float(), dim=1).cpu()


# -- dlib ------------------------------------------------------------------------------------

def face_recognition_models_dir() -> Path:
    """Folder holding the dlib model files of the face-recognition-models package.

    Located with find_spec because importing the package fails on recent setuptools."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("ID backend 'dlib' needs the face-recognition-models package: "
                        "pip install face-recognition-models")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _dlib():
    try:
        import dlib
    except ImportError as exc:
        raise UserError("ID backend 'dlib' needs dlib: pip install dlib-bin") from exc
    return dlib


class FaceLocator:
    """Finds the face box in a face crop: dlib's HOG detector (image upsampled until it is at
    least ``min_detect_size`` px, so 64-128 px crops still work), highest-scoring detection;
    when nothing is found, a centred square covering ``fallback_fraction`` of the crop (1.0: the
    whole crop), which suits tight face crops."""

    def __init__(self, min_detect_size: int = 200, fallback_fraction: float = 1.0):
        dlib = _dlib()
        self.detector = dlib.get_frontal_face_detector()
        self.min_detect_size = min_detect_size
        self.fallback_fraction = fallback_fraction

    def __call__(self, img: np.ndarray):
        dlib = _dlib()
        h, w = img.shape[:2]
        upsample = 0
        while min(h, w) * 2 ** upsample < self.min_detect_size and upsample < 3:
            upsample += 1
        boxes, scores, _ = self.detector.run(img, upsample)
        if len(boxes):
            return boxes[int(np.argmax(scores))]
        side = self.fallback_fraction * min(h, w)
        top, left = (h - side) / 2, (w - side) / 2
        return dlib.rectangle(round(left), round(top), round(left + side) - 1, round(top + side) - 1)


class DlibBackend(IDBackend):
    """dlib's 128-d ResNet face descriptor; same person if Euclidean distance < 0.6.

    Each face is located by ``FaceLocator``, given 5 landmarks by dlib's 5-point predictor and
    aligned by dlib itself. ``embed_pair`` locates faces on the originals and reuses those boxes
    for the adversarial images, so a perturbation that fools the HOG detector does not change
    which region is compared.
    """

    name = "dlib"
    similarity_kind = "negative_distance"

    def __init__(self, distance_threshold: float = 0.6, models_dir: str | Path | None = None,
                 num_jitters: int = 0, fallback_fraction: float = 1.0, workers: int | None = None):
        dlib = _dlib()
        folder = Path(models_dir) if models_dir else face_recognition_models_dir()
        landmarks = folder / "shape_predictor_5_face_landmarks.dat"
        descriptor = folder / "dlib_face_recognition_resnet_model_v1.dat"
        for f in (landmarks, descriptor):
            if not f.is_file():
                raise UserError(f"dlib model file missing: {f}; reinstall face-recognition-models")
        self.threshold = -float(distance_threshold)
        self.distance_threshold = float(distance_threshold)
        self.num_jitters = num_jitters
        self.locate = FaceLocator(fallback_fraction=fallback_fraction)
        self.landmarks = dlib.shape_predictor(str(landmarks))
        # workers=None: one process per available core (at most 4); 1: all in this process
        self.descriptors = DescriptorPool(descriptor, workers, num_jitters)
        # A matrix compares the same originals with the output of every (source, attack): keep
        # each original's face box and descriptor, keyed by its pixels, so each is computed once.
        self._originals: dict[bytes, tuple[Any, np.ndarray]] = {}

    def boxes(self, x01: torch.Tensor) -> list:
        return [self.locate(img) for img in to_uint8_rgb(x01)]

    def _chips(self, images: list[np.ndarray], boxes: list) -> list[np.ndarray]:
        return [face_chip(img, self.landmarks(img, box)) for img, box in zip(images, boxes)]

    def embed(self, x01: torch.Tensor, boxes: list | None = None) -> torch.Tensor:
        images = to_uint8_rgb(x01)
        if boxes is None:
            boxes = [self.locate(img) for img in images]
        return torch.from_numpy(self.descriptors.describe(self._chips(images, boxes))).float()

    def embed_pair(self, orig01, adv01):
        originals = to_uint8_rgb(orig01)
        keys = [hashlib.sha1(img.tobytes()).digest() + bytes(str(img.shape), "ascii") for img in originals]
        new = {k: img for k, img in zip(keys, originals) if k not in self._originals}  # first sight
        new_boxes = {k: self.locate(img) for k, img in new.items()}
        boxes = [new_boxes[k] if k in new_boxes else self._originals[k][0] for k in keys]
        # one batch for the workers: the new originals' chips, then every adversarial chip
        chips = self._chips(list(new.values()), list(new_boxes.values())) + self._chips(to_uint8_rgb(adv01), boxes)
        described = self.descriptors.describe(chips)
        for k, d in zip(new, described[:len(new)]):
            self._originals[k] = (new_boxes[k], d)
        e_orig = np.stack([self._originals[k][1] for k in keys]) if keys else np.zeros((0, 128))
        return torch.from_numpy(e_orig).float(), torch.from_numpy(described[len(new):]).float()

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a.double() - b.double()).norm(dim=1)

    def similarity(self, a, b):
        return -self.distance(a, b)


# -- insightface ArcFace -----------------------------------------------------------------------

def arcface_points_from_68(points: np.ndarray) -> np.ndarray:
    """The 5 ArcFace reference points from dlib's 68 landmarks, in image order: left-of-image eye
    centre (mean of 36-41), right-of-image eye centre (42-47), nose tip (30), left mouth
    corner (48), right mouth corner (54). dlib's 5-point model marks eye corners and the nose
    base, not these points, so the 68-point model is used."""
    points = np.asarray(points, dtype=np.float32)
    return np.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])


class ArcFaceBackend(IDBackend):
    """insightface ArcFace ONNX recognition model (``model_zoo.get_model(path)``), on 112x112 BGR
    uint8 crops aligned by ``face_align.norm_crop`` to 5 landmarks from dlib; raw embeddings are
    L2-normalised; same person if cosine > ``threshold`` (0.28 by default, configurable)."""

    name = "arcface"

    def __init__(self, model_path: str | Path | None = None, threshold: float = 0.28, ctx_id: int = -1,
                 fallback_fraction: float = 1.0):
        # insightface's model zoo imports all three (requests for its downloader)
        missing = [m for m in ("onnxruntime", "onnx", "requests") if importlib.util.find_spec(m) is None]
        if missing:
            raise UserError(f"ID backend 'arcface' needs {', '.join(missing)}: pip install 'artifact-bench[arcface]' "
                            "(onnxruntime, onnx, requests), or use the offline 'dlib' backend")
        if model_path is None or not Path(model_path).expanduser().is_file():
            raise UserError(f"ArcFace model not found: {model_path}; pass model_path= an insightface "
                            "recognition .onnx file (e.g. buffalo_l/w600k_r50.onnx)")
        from insightface.model_zoo import get_model
        from insightface.utils import face_align

        self._norm_crop = face_align.norm_crop
        self.model = get_model(str(Path(model_path).expanduser()))
        self.model.prepare(ctx_id=ctx_id)
        self.threshold = float(threshold)
        dlib = _dlib()
        self.locate = FaceLocator(fallback_fraction=fallback_fraction)
        self.landmarks = dlib.shape_predictor(str(face_recognition_models_dir()
                                                  / "shape_predictor_68_face_landmarks.dat"))

    def five_points(self, img: np.ndarray, box=None) -> np.ndarray:
        shape = self.landmarks(img, box if box is not None else self.locate(img))
        return arcface_points_from_68(np.array([[p.x, p.y] for p in shape.parts()]))

    def embed(self, x01: torch.Tensor, boxes: list | None = None) -> torch.Tensor:
        images = to_uint8_rgb(x01)
        boxes = boxes or [None] * len(images)
        feats = []
        for img, box in zip(images, boxes):
            aligned = self._norm_crop(img[:, :, ::-1].copy(), self.five_points(img, box), image_size=112)
            feats.append(np.asarray(self.model.get_feat(aligned)).reshape(-1))
        return F.normalize(torch.from_numpy(np.stack(feats)).float(), dim=1)

    def embed_pair(self, orig01, adv01):
        boxes = [self.locate(img) for img in to_uint8_rgb(orig01)]
        return self.embed(orig01, boxes), self.embed(adv01, boxes)


# -- registry ------------------------------------------------------------------------------------

@register_id_backend("irse50")
def irse50(weights: str | None = None, **kwargs) -> IRSE50Backend:
    """pSp IR-SE50 (model_ir_se50.pth), cosine > 0.75 (the paper's ID retention)."""
    return IRSE50Backend(weights=weights, **kwargs)


@register_id_backend("arcface")
def arcface(model_path: str | None = None, **kwargs) -> ArcFaceBackend:
    """insightface ArcFace ONNX, cosine > 0.28 by default (needs onnxruntime)."""
    return ArcFaceBackend(model_path=model_path, **kwargs)


@register_id_backend("dlib")
def dlib_backend(**kwargs) -> DlibBackend:
    """dlib 128-d face descriptor, distance < 0.6 (offline)."""
    return DlibBackend(**kwargs)


def create_id_backend(name: str = "auto", **kwargs: Any) -> IDBackend:
    """Build an ID backend by name. ``auto``: ``irse50`` when ``weights=`` is given, ``arcface``
    when ``model_path=`` is given, else the offline ``dlib`` backend."""
    if name == "auto":
        if kwargs.get("weights"):
            name = "irse50"
        elif kwargs.get("model_path"):
            name = "arcface"
        else:
            name = "dlib"
            kwargs = {k: v for k, v in kwargs.items() if k not in ("weights", "model_path")}
    return ID_BACKENDS.create(name, **kwargs)
