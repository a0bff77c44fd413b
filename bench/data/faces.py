"""Face detection, landmarks and square face crops.

Backends (``make_face_detector``):

- ``dlib`` (default, offline): dlib's HOG frontal face detector;
- ``dlib-cnn``: dlib's MMOD CNN detector, ``mmod_human_face_detector.dat`` from
  face-recognition-models (slower on CPU, finds more poses);
- ``retinaface``: insightface's RetinaFace/SCRFD ONNX model — the detector family the paper
  uses — when the user gives its model file (needs ``onnxruntime``).

Every backend returns boxes ``(x0, y0, x1, y1, score)`` in pixels, best first.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from bench.errors import UserError

Box = tuple[float, float, float, float, float]


def face_models_dir() -> Path:
    """Folder of face-recognition-models' dlib files, found without importing the package
    (its ``__init__`` needs ``pkg_resources``, gone from recent setuptools)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("face-recognition-models is not installed: pip install face-recognition-models")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def face_model_file(name: str) -> Path:
    path = face_models_dir() / name
    if not path.is_file():
        raise UserError(f"missing dlib model file {path}: reinstall face-recognition-models")
    return path


class FaceDetector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> list[Box]: ...


class DlibHogDetector:
    name = "dlib"

    def __init__(self, upsample: int = 1):
        self.upsample = int(upsample)
        self._detector = _hog_detector()

    def detect(self, rgb: np.ndarray) -> list[Box]:
        rects, scores, _ = self._detector.run(np.ascontiguousarray(rgb), self.upsample, 0.0)
        boxes = [(r.left(), r.top(), r.right(), r.bottom(), float(s)) for r, s in zip(rects, scores)]
        return sorted(boxes, key=lambda b: -b[4])


@lru_cache(maxsize=1)
def _hog_detector():
    import dlib

    return dlib.get_frontal_face_detector()  # ~1 s to build: share one per process


class DlibCnnDetector:
    name = "dlib-cnn"

    def __init__(self, upsample: int = 1, model_file: str | Path | None = None):
        import dlib

        self.upsample = int(upsample)
        path = Path(model_file) if model_file else face_model_file("mmod_human_face_detector.dat")
        self._detector = dlib.cnn_face_detection_model_v1(str(path))

    def detect(self, rgb: np.ndarray) -> list[Box]:
        found = self._detector(np.ascontiguousarray(rgb), self.upsample)
        boxes = [(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), float(d.confidence))
                 for d in found]
        return sorted(boxes, key=lambda b: -b[4])


class RetinaFaceDetector:
    name = "retinaface"

    def __init__(self, model_file: str | Path | None, det_size: int = 640, threshold: float = 0.5):
        if not model_file or not Path(model_file).is_file():
            raise UserError(f"retinaface needs its ONNX model file (e.g. det_10g.onnx from insightface's "
                            f"buffalo_l pack); got {model_file!r}: pass face_model=PATH")
        missing = [m for m in ("onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
        if missing:  # insightface's model zoo imports both at import time
            raise UserError(f"face detector 'retinaface' needs {' and '.join(missing)} (insightface imports "
                            f"them): pip install onnxruntime onnx, or use face_detector='dlib'")
        try:
            from insightface.model_zoo import get_model
        except ImportError as exc:
            raise UserError(f"face detector 'retinaface': cannot import insightface ({exc}); "
                            "pip install insightface onnxruntime onnx") from exc

        self._model = get_model(str(model_file))
        self._model.prepare(ctx_id=-1, input_size=(det_size, det_size), det_thresh=threshold)

    def detect(self, rgb: np.ndarray) -> list[Box]:
        dets, _ = self._model.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))  # insightface wants BGR
        boxes = [(float(x0), float(y0), float(x1), float(y1), float(s)) for x0, y0, x1, y1, s in dets]
        return sorted(boxes, key=lambda b: -b[4])


FACE_DETECTORS = ("dlib", "dlib-cnn", "retinaface")


def make_face_detector(name: str = "dlib", model_file: str | Path | None = None) -> FaceDetector:
    if name == "dlib":
        return DlibHogDetector()
    if name == "dlib-cnn":
        return DlibCnnDetector(model_file=model_file)
    if name == "retinaface":
        return RetinaFaceDetector(model_file)
    raise UserError(f"unknown face detector {name!r}: use one of {', '.join(FACE_DETECTORS)}")


def square_box(box: Box | tuple[float, float, float, float], margin: float) -> tuple[int, int, int, int]:
    """The square around a face box, its side enlarged by ``margin`` (0.3 = 30 % wider)."""
    x0, y0, x1, y1 = box[:4]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(x1 - x0, y1 - y0) * (1 + margin)
    half = side / 2
    return round(cx - half), round(cy - half), round(cx + half), round(cy + half)


def crop_face(rgb: np.ndarray, box: Box | tuple[float, float, float, float], margin: float = 0.3,
              size: int = 256) -> np.ndarray:
    """A square crop around ``box`` resized to ``size``; parts outside the frame are edge-replicated
    so the face stays centred at the frame border."""
    x0, y0, x1, y1 = square_box(box, margin)
    h, w = rgb.shape[:2]
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        rgb = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    patch = rgb[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if patch.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(patch, (size, size), interpolation=interp)


@lru_cache(maxsize=2)
def _shape_predictor(points: int):
    import dlib

    if points not in (5, 68):
        raise ValueError("dlib shape predictors have 5 or 68 points")
    return dlib.shape_predictor(str(face_model_file(f"shape_predictor_{points}_face_landmarks.dat")))


def landmarks(rgb: np.ndarray, box: Box | tuple[float, float, float, float], points: int = 68) -> np.ndarray:
    """dlib landmarks (points, 2) float32 (x, y) of the face in ``box``."""
    import dlib

    x0, y0, x1, y1 = (round(v) for v in box[:4])
    shape = _shape_predictor(points)(np.ascontiguousarray(rgb), dlib.rectangle(x0, y0, x1, y1))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
