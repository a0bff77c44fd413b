"""The offline demo world: determinism, sizes, balance, disjoint splits, real forgeries."""

from __future__ import annotations

import numpy as np
import pytest

from bench.data import demo as demo_module
from bench.data.demo import DemoFaces, DemoOptions, demo_real_faces, world_folder
from bench.data.demo_sources import BOX, colour_faces
from bench.data.forgery import augment, face_swap, hull_mask, reinhard_transfer, self_blend
from bench.registry import create_dataset

SMALL = {"reals_per_identity": 4, "lfw": 12, "quiet": True}  # lfw_000..011: all train


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("demo-cache")


@pytest.fixture(scope="module")
def world(cache):
    return create_dataset("demo", split="all", cache_dir=str(cache), **SMALL)


@pytest.fixture(scope="module")
def faces():
    return {f.identity: f for f in colour_faces()}


def test_sources_are_the_eight_shipped_colour_faces(faces):
    assert sorted(faces) == ["astronaut", "t1_0", "t1_1", "t1_2", "t1_3", "t1_4", "t1_5", "tom_hanks"]
    astronaut = faces["astronaut"]
    assert astronaut.image.shape == (160, 160, 3) and astronaut.points.shape == (68, 2)
    # landmarks sit on the face in the central dlib box: jaw spans most of it, eyes above the mouth
    assert 30 < astronaut.points[:, 0].min() and astronaut.points[:, 0].max() < 130
    assert astronaut.points[36:48, 1].mean() < astronaut.points[48:68, 1].mean() - 15


def test_world_sizes_balance_and_disjoint_splits(world, cache):
    # 8 colour identities x (4 real + 4 fake) + 12 LFW faces x (1 real + 1 fake), minus LFW misses
    n_lfw = int((~world.index["colour"]).sum()) // 2
    assert 10 <= n_lfw <= 12 and len(world) == 8 * 8 + 2 * n_lfw
    assert world[0].image01.shape == (3, 64, 64) and world.images.dtype == np.uint8
    assert world[0].meta["kind"] == "real" and world[0].video_id == world[0].meta["identity"]
    assert world.labels.count(0) == world.labels.count(1)
    train = create_dataset("demo", split="train", cache_dir=str(cache), **SMALL)
    test = create_dataset("demo", split="test", cache_dir=str(cache), **SMALL)
    assert len(train) + len(test) == len(world)
    assert set(test.index["identity"]) == {"t1_4", "t1_5", "tom_hanks"}
    assert not set(train.index["identity"]) & set(test.index["identity"])
    for part in (train, test):
        assert part.labels.count(0) == part.labels.count(1)
        donors = set(part.index["donor"]) - {""}
        assert donors and donors <= set(part.index["identity"])  # swaps never cross the split
        assert part.stats["fakes_sbi"] > 0 and part.stats["fakes_swap"] > 0
    assert test.stats["identities"] == 3


def test_world_is_deterministic_and_cached(world, cache, tmp_path, monkeypatch):
    again = DemoFaces(split="all", cache_dir=str(tmp_path), **SMALL)
    assert np.array_equal(again.images, world.images)
    assert again.index.equals(world.index)
    opts = DemoOptions(reals_per_identity=4, lfw=12)
    assert (world_folder(opts, tmp_path) / "images.safetensors").read_bytes() == \
        (world_folder(opts, cache) / "images.safetensors").read_bytes()
    other = DemoFaces(split="all", seed=1, cache_dir=str(tmp_path), **SMALL)
    assert not np.array_equal(other.images, world.images)

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the demo world was rebuilt although it is cached")

    monkeypatch.setattr(demo_module, "build_world", no_rebuild)
    assert np.array_equal(DemoFaces(split="all", cache_dir=str(cache), **SMALL).images, world.images)


def test_demo_real_faces_are_the_real_crops(world, cache):
    reals = demo_real_faces(size=64, cache_dir=str(cache), reals_per_identity=4, lfw=12)
    assert reals.dtype == np.uint8 and reals.shape == (world.labels.count(0), 64, 64, 3)
    assert np.array_equal(reals[0], world.images[world.labels.index(0)])


def _far_and_core(points: np.ndarray, shape: tuple[int, int], reach: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Pixels more than ``reach`` px outside the landmark hull, and the hull eroded by 6 px."""
    import cv2

    hull = hull_mask(points, shape).astype(np.uint8)
    ellipse = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
    far = cv2.dilate(hull, ellipse) == 0
    core = cv2.erode(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (13, 13))) > 0
    return far, core


def test_self_blend_changes_the_face_and_nothing_outside_its_mask(faces):
    face = faces["astronaut"]
    diffs = []
    for seed in range(6):
        fake, mask = self_blend(face.image, face.points, np.random.default_rng(seed))
        diff = np.abs(fake.astype(int) - face.image.astype(int)).sum(-1)
        far, core = _far_and_core(face.points, mask.shape)
        assert diff[mask == 0].max() == 0 and diff[far].max() == 0  # untouched away from the face
        assert far.mean() > 0.3 and core.sum() > 2000  # the hull is the face, not the frame
        diffs.append(diff[core].mean() / 3)
    assert np.mean(diffs) > 6  # grey levels per channel, inside the face


def test_face_swap_puts_the_donor_face_inside_the_target_hull(faces):
    target, donor = faces["t1_0"], faces["t1_3"]
    kinds = set()
    for seed in range(4):
        rng = np.random.default_rng(seed)
        poisson = rng.random() < 0.5
        fake, mask = face_swap(target.image, target.points, donor.image, donor.points, np.random.default_rng(seed))
        kinds.add(poisson)
        diff = np.abs(fake.astype(int) - target.image.astype(int)).sum(-1) / 3
        far, core = _far_and_core(target.points, mask.shape)
        assert diff[mask == 0].max() == 0 and diff[far].max() == 0
        assert diff[core].mean() > 8
        assert hull_mask(target.points, mask.shape)[mask > 0.5].min() == 1  # within the target face
    assert kinds == {True, False}  # both Poisson and feathered blending were exercised


def test_reinhard_transfer_matches_lab_statistics():
    import cv2

    rng = np.random.default_rng(0)
    source = rng.integers(0, 120, (40, 40, 3)).astype(np.uint8)
    target = rng.integers(100, 220, (40, 40, 3)).astype(np.uint8)
    region = np.ones((40, 40), np.float32)
    out = reinhard_transfer(source, target, region)
    lab = [cv2.cvtColor(x.astype(np.float32) / 255, cv2.COLOR_RGB2Lab).reshape(-1, 3) for x in (out, target)]
    assert np.allclose(lab[0].mean(0), lab[1].mean(0), atol=1.5)
    assert np.allclose(lab[0].std(0), lab[1].std(0), atol=1.5)


def test_augment_moves_landmarks_with_the_image(faces):
    face = faces["astronaut"]
    image, points = augment(face.image, face.points, np.random.default_rng(3))
    assert image.shape == face.image.shape and points.shape == (68, 2)
    # the face box centre in the augmented view stays within the small shift/scale range
    centre = points.mean(0)
    assert np.all(np.abs(centre - face.points.mean(0)) < 0.04 * 160 + 0.08 * 80 + 1)
    assert BOX == (40.0, 40.0, 120.0, 120.0)
