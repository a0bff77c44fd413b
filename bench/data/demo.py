"""The offline demo world: real faces that ship with installed packages, and forgeries made from
them with real techniques (self-blended images and landmark-aligned face swaps).

~8 colour identities (astronaut, six people of insightface's t1.jpg, Tom Hanks) give
``reals_per_identity`` augmented real crops and as many forgeries each (half SBI, half swaps with
another identity of the same split); ~93 grey 25 px LFW faces give one real and one forgery each.
Splits are disjoint by identity (LFW: by image, its identities are unknown). Everything is
deterministic given ``seed`` and cached as uint8 safetensors + a parquet index under
``<cache>/demo/<options hash>/``. Numbers measured here are not comparable with the paper's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from safetensors.numpy import load_file, save_file

from bench.data.cache import atomic_write, cache_root, options_hash
from bench.data.demo_sources import BOX, LFW_FACES, FaceSource, all_faces
from bench.data.faces import crop_face
from bench.data.forgery import augment, face_swap, jpeg, self_blend
from bench.errors import UserError
from bench.registry import register_dataset
from bench.types import Sample

DEMO_VERSION = 1  # bump when the recipe changes, so old caches are not reused
TEST_COLOUR_IDENTITIES = ("t1_4", "t1_5", "tom_hanks")
LFW_TEST_FROM = 70  # lfw_070 .. lfw_099 are test
CROP_MARGIN = 0.3  # final crop: the dlib box widened by 30 %, as the video adapters do


@dataclass(frozen=True)
class DemoOptions:
    size: int = 64
    seed: int = 0
    reals_per_identity: int = 24  # per colour identity; as many forgeries
    lfw: int = LFW_FACES  # LFW faces to use (0-100), one real and one forgery each
    jpeg_quality: tuple[int, int] = (70, 95)

    def __post_init__(self) -> None:
        if not 32 <= self.size <= 256:
            raise UserError(f"demo size {self.size} out of range: use 32-256 (64-128 recommended)")
        if not 0 <= self.lfw <= LFW_FACES:
            raise UserError(f"demo lfw={self.lfw}: use 0-{LFW_FACES}")


def split_of(identity: str) -> str:
    if identity.startswith("lfw_"):
        return "test" if int(identity[4:]) >= LFW_TEST_FROM else "train"
    return "test" if identity in TEST_COLOUR_IDENTITIES else "train"


def build_world(options: DemoOptions) -> tuple[np.ndarray, pd.DataFrame]:
    """All demo images (N, size, size, 3) uint8 and their index, both splits."""
    rng = np.random.default_rng(options.seed)
    faces = all_faces(options.lfw)
    by_split: dict[str, list[FaceSource]] = {"train": [], "test": []}
    for face in faces:
        by_split[split_of(face.identity)].append(face)
    images, rows = [], []

    def add(image: np.ndarray, face: FaceSource, label: int, kind: str, frame: int, donor: str = "") -> None:
        quality = int(rng.integers(options.jpeg_quality[0], options.jpeg_quality[1] + 1))
        crop = crop_face(image, BOX, margin=CROP_MARGIN, size=options.size)
        images.append(jpeg(crop, quality))
        video = face.identity if kind == "real" else f"{face.identity}_{donor or kind}"
        rows.append({"id": f"demo/{len(rows):05d}", "label": label, "split": split_of(face.identity),
                     "identity": face.identity, "video_id": video, "frame": frame, "kind": kind,
                     "donor": donor, "colour": face.colour, "jpeg_quality": quality})

    for split in ("train", "test"):
        group = by_split[split]
        for face in group:
            count = options.reals_per_identity if face.colour else 1
            peers = [f for f in group if f.colour == face.colour and f.identity != face.identity]
            for k in range(count):
                add(*augment(face.image, face.points, rng)[:1], face, 0, "real", k)
            for k in range(count):
                target, points = augment(face.image, face.points, rng)
                # alternate techniques; LFW faces alternate by image so both kinds appear
                use_swap = bool((k + (0 if face.colour else int(face.identity[4:]))) % 2) and peers
                if use_swap:
                    donor = peers[int(rng.integers(len(peers)))]
                    donor_image, donor_points = augment(donor.image, donor.points, rng)
                    fake, _ = face_swap(target, points, donor_image, donor_points, rng)
                    add(fake, face, 1, "swap", k, donor.identity)
                else:
                    fake, _ = self_blend(target, points, rng)
                    add(fake, face, 1, "sbi", k)
    return np.stack(images), pd.DataFrame(rows)


def world_folder(options: DemoOptions, cache_dir: str | Path | None = None) -> Path:
    return cache_root(cache_dir) / "demo" / options_hash({**asdict(options), "version": DEMO_VERSION})


def load_world(options: DemoOptions, cache_dir: str | Path | None = None, quiet: bool = False
               ) -> tuple[np.ndarray, pd.DataFrame, Path]:
    """The cached world, built first when absent (images written before the index marker)."""
    folder = world_folder(options, cache_dir)
    index_path, images_path = folder / "index.parquet", folder / "images.safetensors"
    console = Console(stderr=True, quiet=quiet)
    if not index_path.is_file():
        with console.status("building the demo world (offline faces, SBI and face-swap forgeries)"):
            images, index = build_world(options)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(images_path, lambda tmp: save_file({"images": images}, tmp,
                                                        metadata={"options": json.dumps(asdict(options))}))
        atomic_write(index_path, lambda tmp: index.to_parquet(tmp, index=False))  # the "done" marker
        console.print(f"demo world: built {len(index)} images ({options.size} px) in {folder}")
    else:
        console.print(f"demo world: {folder}")
    return load_file(str(images_path))["images"], pd.read_parquet(index_path), folder


class DemoFaces(torch.utils.data.Dataset):
    """One split of the demo world; ``labels`` and ``video_ids`` need no image decoding."""

    def __init__(self, split: str = "test", size: int = 64, seed: int = 0, reals_per_identity: int = 24,
                 lfw: int = LFW_FACES, cache_dir: str | Path | None = None, quiet: bool = False):
        if split not in ("train", "test", "all"):
            raise UserError(f"unknown demo split {split!r}: use train, test or all")
        options = DemoOptions(int(size), int(seed), int(reals_per_identity), int(lfw))
        images, index, self.folder = load_world(options, cache_dir, quiet)
        keep = np.ones(len(index), bool) if split == "all" else (index["split"] == split).to_numpy()
        self.images = images[keep]
        self.index = index[keep].reset_index(drop=True)
        self.labels = self.index["label"].astype(int).tolist()
        self.video_ids = self.index["video_id"].tolist()
        self.stats = {"crops": len(self.labels), "crops_real": self.labels.count(0),
                      "crops_fake": self.labels.count(1), "identities": int(self.index["identity"].nunique()),
                      **{f"fakes_{k}": int((self.index["kind"] == k).sum()) for k in ("sbi", "swap")}}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < len(self.labels):
            raise IndexError(i)
        row = self.index.iloc[i]
        image = torch.from_numpy(self.images[i].copy()).permute(2, 0, 1).float().div_(255.0)
        meta = {k: str(row[k]) for k in ("identity", "kind", "donor", "split")}
        meta.update(colour=bool(row["colour"]), jpeg_quality=int(row["jpeg_quality"]))
        return Sample(id=str(row["id"]), image01=image, label=int(row["label"]), video_id=str(row["video_id"]),
                      frame=int(row["frame"]), meta=meta)


def demo_real_faces(size: int = 64, split: str = "all", seed: int = 0, cache_dir: str | Path | None = None,
                    quiet: bool = True, **world_options) -> np.ndarray:
    """The demo world's real face crops, uint8 (N, size, size, 3) RGB (e.g. to train a generator);
    ``world_options`` (reals_per_identity, lfw) pick the same world as the ``demo`` dataset."""
    data = DemoFaces(split=split, size=size, seed=seed, cache_dir=cache_dir, quiet=quiet, **world_options)
    return data.images[np.asarray(data.labels) == 0]


@register_dataset("demo", accepts=(DemoFaces,))
def demo(**kwargs) -> DemoFaces:
    """Offline demo world: ~8 real identities + 93 tiny LFW faces; SBI and face-swap forgeries."""
    return DemoFaces(**kwargs)
