"""The offline demo world's models: trained on first use, cached, and found by the demo matrix.

``prepare_demo_world`` (the ``demo_world`` prepare hook of bench/matrices/demo.yaml) builds the
demo faces (bench/data/demo.py), trains the four detector families at reduced width on its
train split, and trains a small StyleGAN2 + e4e pair as an autoencoder on its real faces so the
eraser has a generator to walk in. Everything lands in one cache folder whose name hashes the
recipe below, exported as ``$ARTIFACT_BENCH_DEMO_MODELS`` for the matrix to use. A model file
that exists is never retrained, so an interrupted preparation resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import torch

from bench.data.cache import cache_root
from bench.progress import say

ENV = "ARTIFACT_BENCH_DEMO_MODELS"
IMAGE_SIZE = 64
# family -> (detector kwargs, epochs); the `tiny` presets keep the architectures, at reduced width
DETECTORS = {
    "efficientnet_b4": ({"preset": "tiny", "input_size": 64}, 3),
    "xception": ({"preset": "tiny"}, 4),
    "mat": ({"preset": "tiny", "input_size": 64}, 3),
    "recce": ({"preset": "tiny"}, 3),
}
AUTOENCODER_STEPS = 400
RECIPE_VERSION = 4  # 4: MAT (2) and RECCE (3) in the official layouts; old demo files no longer fit


def recipe() -> dict:
    return {"version": RECIPE_VERSION, "size": IMAGE_SIZE, "detectors": DETECTORS,
            "autoencoder_steps": AUTOENCODER_STEPS}


def models_folder() -> Path:
    digest = hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:12]
    return cache_root() / "demo-models" / digest


def prepare_demo_world(quiet: bool = False) -> Path:
    folder = models_folder()  # returned to the prepare stage, which substitutes it for ${ENV}
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    todo = [f for f in DETECTORS if not (folder / f"{f}.safetensors").is_file()]
    need_stack = not (folder / "e4e_demo.pt").is_file()
    if not todo and not need_stack:
        say(f"demo models: cached in {folder}", quiet)
        return folder
    say(f"demo models: training {', '.join(todo + (['stylegan2+e4e'] if need_stack else []))} "
        f"into {folder} (first run only)", quiet)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if todo:
        _train_detectors(folder, todo, quiet)
    if need_stack:
        _train_latent_stack(folder, quiet)
    (folder / "recipe.json").write_text(json.dumps(recipe(), indent=2, sort_keys=True))
    say(f"demo models: ready in {time.time() - started:.0f} s ({folder})", quiet)
    return folder


def _train_detectors(folder: Path, families: list[str], quiet: bool) -> None:
    from bench.registry import create_dataset
    from bench.training import train_detector

    train = create_dataset("demo", split="train", size=IMAGE_SIZE, quiet=quiet)
    # Validation on the identity-disjoint test split: the train split's "videos" share source
    # photos across real and fake (an SBI is made from the same photo as its real), so a
    # video-level hold-out there rewards memorising photos and reads below chance.
    test = create_dataset("demo", split="test", size=IMAGE_SIZE, quiet=True)
    for family in families:
        kwargs, epochs = DETECTORS[family]
        result = train_detector(family, train, epochs=epochs, out=folder / f"{family}.safetensors",
                                detector_kwargs=dict(kwargs), val_dataset=test, batch_size=32, lr=2e-3, seed=0,
                                device="cpu", resume=True, quiet=quiet,
                                dataset_info={"name": "demo", "split": "train", "size": IMAGE_SIZE})
        metrics = getattr(result, "metrics", None) or {}
        say(f"  {family}: {json.dumps({k: round(v, 3) for k, v in metrics.items() if isinstance(v, float)})}",
            quiet)


def _train_latent_stack(folder: Path, quiet: bool) -> None:
    from bench.data.demo import demo_real_faces
    from bench.finetune import train_autoencoder
    from bench.models.checkpoints import save_e4e

    faces = torch.from_numpy(demo_real_faces(size=IMAGE_SIZE, split="all")).permute(0, 3, 1, 2).float() / 255
    result = train_autoencoder(faces, AUTOENCODER_STEPS, batch_size=16, seed=0, device="cpu", quiet=quiet)
    tmp = folder / ".e4e_demo.pt.tmp"
    save_e4e(tmp, result.encoder, result.generator, result.latent_avg)
    os.replace(tmp, folder / "e4e_demo.pt")
