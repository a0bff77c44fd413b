"""The real faces that ship offline with installed packages, as aligned "work views".

Sources (REFERENCE.md section 9): scikit-image's ``astronaut()`` (1 face), insightface's
``t1.jpg`` (6 faces) and ``Tom_Hanks_54745.png`` (1 face), read from insightface's data folder
without importing insightface (its import needs onnxruntime), and scikit-image's
``lfw_subset()`` items 0-99 (25x25 grey LFW crops; upsampled, colourised, kept where dlib finds a
face). Each face becomes a ``FaceSource``: a square work view with the dlib box at its centre and
dlib's 68 landmarks in work-view pixels.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bench.data.faces import DlibHogDetector, crop_face, landmarks
from bench.errors import UserError

WORK = 160  # work view side; the dlib box is the central WORK/2 square
BOX = (WORK / 4, WORK / 4, 3 * WORK / 4, 3 * WORK / 4)
LFW_FACES = 100  # lfw_subset items 0-99 are faces, 100-199 are not


@dataclass
class FaceSource:
    identity: str  # one person (colour sources) or one LFW image (identity unknown)
    image: np.ndarray  # uint8 (WORK, WORK, 3) RGB
    points: np.ndarray  # float32 (68, 2) landmarks in work-view pixels
    colour: bool  # False for the grey LFW faces


def insightface_images_dir() -> Path | None:
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "images"
    return folder if folder.is_dir() else None


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def work_view(rgb: np.ndarray, box: tuple[float, ...], identity: str, colour: bool = True) -> FaceSource:
    """Crop twice the box side around the face, resize to WORK, and find its 68 landmarks."""
    view = crop_face(rgb, box, margin=1.0, size=WORK)
    return FaceSource(identity, view, landmarks(view, BOX, 68), colour)


def colour_faces() -> list[FaceSource]:
    """The ~8 colour faces: astronaut, the six people of t1.jpg (left to right), Tom Hanks."""
    from skimage import data

    detector = DlibHogDetector(upsample=0)
    sources = []
    astronaut = data.astronaut()
    sources.append(work_view(astronaut, detector.detect(astronaut)[0], "astronaut"))
    folder = insightface_images_dir()
    if folder is None:  # without them the test split loses its colour identities: refuse, don't degrade
        raise UserError("the demo world needs insightface's sample images: "
                        "pip install --no-deps insightface==2.1 (install.sh does this)")
    group = _read_rgb(folder / "t1.jpg")
    people = sorted(detector.detect(group), key=lambda b: b[0])  # left to right: stable names
    sources += [work_view(group, box, f"t1_{i}") for i, box in enumerate(people)]
    hanks = _read_rgb(folder / "Tom_Hanks_54745.png")
    found = detector.detect(hanks)
    if found:
        sources.append(work_view(hanks, found[0], "tom_hanks"))
    return sources


def lfw_faces(skin_ab: tuple[float, float], count: int = LFW_FACES) -> list[FaceSource]:
    """LFW subset faces: 25 px grey -> 96 px, edge-padded, tinted with the colour faces' mean skin
    chroma (Lab a, b), kept when dlib finds the face (93 of the 100 at upsample 1)."""
    from skimage import data

    detector = DlibHogDetector(upsample=1)
    grey = data.lfw_subset()[:min(count, LFW_FACES)]
    sources = []
    for i, face in enumerate(grey):
        big = cv2.resize((face * 255).round().astype(np.uint8), (96, 96), interpolation=cv2.INTER_CUBIC)
        big = cv2.copyMakeBorder(big, 24, 24, 24, 24, cv2.BORDER_REPLICATE)
        rgb = tint(big, skin_ab)
        found = detector.detect(rgb)
        if found:
            sources.append(work_view(rgb, found[0], f"lfw_{i:03d}", colour=False))
    return sources


def tint(grey: np.ndarray, ab: tuple[float, float]) -> np.ndarray:
    """Grey uint8 (H,W) -> RGB with its lightness and a constant Lab chroma ``ab``."""
    lab = np.empty((*grey.shape, 3), np.float32)
    lab[..., 0] = grey.astype(np.float32) * (100.0 / 255.0)
    lab[..., 1], lab[..., 2] = ab
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def mean_skin_ab(sources: list[FaceSource]) -> tuple[float, float]:
    """Mean Lab (a, b) inside the landmark hulls of the colour faces."""
    from bench.data.forgery import hull_mask

    values = []
    for s in sources:
        lab = cv2.cvtColor(s.image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
        values.append(lab[hull_mask(s.points, s.image.shape[:2]) > 0.5][:, 1:])
    stacked = np.concatenate(values)
    return float(stacked[:, 0].mean()), float(stacked[:, 1].mean())


def all_faces(lfw: int = LFW_FACES) -> list[FaceSource]:
    colour = colour_faces()
    return colour + (lfw_faces(mean_skin_ab(colour), lfw) if lfw else [])
