"""Dataset adapters on miniature copies of the official layouts (tiny mp4s with a real face)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.data import frames as frames_module
from bench.data.faces import crop_face, make_face_detector
from bench.data.frames import sample_frame_indices
from bench.data.layout import missing_files
from bench.errors import UserError
from bench.registry import create_dataset
from tests.datasets_fixtures import blank_frame, face_frame, make_celebdf, make_dfdc, make_ffpp

OPTS = {"count": 3, "size": 64, "quiet": True}  # 3 evenly spaced frames of 6 -> frames 0, 2, 5


@pytest.fixture()
def decodes(monkeypatch):
    """Counts cv2.VideoCapture constructions made by the frame reader."""
    calls: list[str] = []
    real = cv2.VideoCapture

    def counting(path, *args):
        calls.append(str(path))
        return real(path, *args)

    monkeypatch.setattr(frames_module.cv2, "VideoCapture", counting)
    return calls


def test_frame_sampling_even_and_official_clips():
    assert sample_frame_indices(6, "even", 3) == [0, 2, 5]
    assert sample_frame_indices(100, "even", 5) == [0, 25, 50, 74, 99]
    assert sample_frame_indices(2, "even", 8) == [0, 1]
    assert sample_frame_indices(30, "clip", 1, 14) == list(range(14))
    assert sample_frame_indices(30, "clip", 2, 14) == list(range(14)) + list(range(16, 30))
    assert sample_frame_indices(10, "clip", 1, 14) == list(range(10))


def test_dlib_detector_finds_the_fixture_face_and_not_a_blank_frame():
    detector = make_face_detector("dlib")
    boxes = detector.detect(face_frame())
    assert len(boxes) == 1
    x0, y0, x1, y1, _ = boxes[0]
    assert 30 <= x1 - x0 <= 60 and 40 <= (x0 + x1) / 2 <= 90 and 30 <= (y0 + y1) / 2 <= 70
    assert detector.detect(blank_frame()) == []


def test_dlib_cnn_detector_and_retinaface_errors(tmp_path, monkeypatch):
    boxes = make_face_detector("dlib-cnn").detect(face_frame())
    assert len(boxes) == 1 and 40 <= (boxes[0][0] + boxes[0][2]) / 2 <= 90
    with pytest.raises(UserError, match="face_model=PATH"):
        make_face_detector("retinaface")
    model = tmp_path / "det_10g.onnx"
    model.write_bytes(b"onnx")
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",  # as on a machine without onnxruntime
                        lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a))
    with pytest.raises(UserError, match="pip install onnxruntime"):
        make_face_detector("retinaface", model)
    with pytest.raises(UserError, match="dlib, dlib-cnn, retinaface"):
        make_face_detector("mtcnn")


def test_crop_face_is_square_centred_and_pads_at_the_border():
    rgb = np.zeros((100, 100, 3), np.uint8)
    rgb[40:60, 40:60] = 255
    crop = crop_face(rgb, (40, 40, 60, 60), margin=1.0, size=40)  # 40 px square, white centre half
    assert crop.shape == (40, 40, 3)
    assert crop[10:30, 10:30].min() == 255 and crop[:8].max() == 0
    edge = crop_face(rgb, (-10, -10, 10, 10), margin=0.0, size=20)  # half outside: replicated
    assert edge.shape == (20, 20, 3)


def test_celebdf_labels_splits_counts_and_cache(tmp_path, decodes, monkeypatch):
    root = make_celebdf(tmp_path / "celebdf")
    cache = tmp_path / "cache"
    test = create_dataset("celebdf", root=str(root), split="test", cache_dir=str(cache), **OPTS)
    # list says 1 = real: Celeb-real and YouTube-real are real (0), the synthesis video fake (1)
    assert sorted(set(test.video_ids)) == ["Celeb-real/id0_0000", "Celeb-synthesis/id0_id1_0000",
                                          "YouTube-real/00000"]
    assert test.labels == [0, 0, 0, 1, 1, 1, 0, 0, 0]
    assert [test[i].frame for i in range(3)] == [0, 2, 5]
    assert test.stats["videos_corrupt"] == 1 and test.stats["videos_ok"] == 3
    assert test.stats["crops"] == 9 and test.stats["frames_read"] == 9
    sample = test[3]
    assert sample.label == 1 and sample.video_id == "Celeb-synthesis/id0_id1_0000"
    assert sample.image01.shape == (3, 64, 64) and 0 <= sample.image01.min() and sample.image01.max() <= 1
    assert sample.image01.std() > 0.1  # a face crop, not a flat patch
    assert len(decodes) == 4

    train = create_dataset("celebdf", root=str(root), split="train", cache_dir=str(cache), **OPTS)
    assert sorted(set(train.video_ids)) == ["Celeb-real/id1_0000", "Celeb-synthesis/id1_id2_0000"]
    assert train.stats["frames_no_face"] == 1 and train.stats["crops"] == 5  # frame 5 is blank
    assert train.labels == [0, 0, 0, 1, 1]

    # the second construction reads the cache: no video is opened at all
    monkeypatch.setattr(frames_module.cv2, "VideoCapture", _forbidden)
    again = create_dataset("celebdf", root=str(root), split="test", cache_dir=str(cache), **OPTS)
    assert again.labels == test.labels and again.stats == test.stats
    assert np.array_equal(again[4].image01.numpy(), test[4].image01.numpy())


def test_crop_cache_resumes_a_killed_run(tmp_path, decodes):
    root = make_celebdf(tmp_path / "celebdf")
    first = create_dataset("celebdf", root=str(root), split="all", cache_dir=str(tmp_path / "c"), **OPTS)
    marker = next(first.store.videos_dir.glob("Celeb-real__id1_0000.json"))
    marker.unlink()  # as if killed before this video was committed
    first.store.index_path.unlink()
    decodes.clear()
    resumed = create_dataset("celebdf", root=str(root), split="all", cache_dir=str(tmp_path / "c"), **OPTS)
    assert decodes == [str(root / "Celeb-real/id1_0000.mp4")]
    assert resumed.labels == first.labels and resumed.stats == first.stats


def test_options_change_the_cache_folder(tmp_path):
    root = make_celebdf(tmp_path / "celebdf")
    small = create_dataset("celebdf", root=str(root), split="test", cache_dir=str(tmp_path / "c"), **OPTS)
    big = create_dataset("celebdf", root=str(root), split="test", cache_dir=str(tmp_path / "c"),
                         **{**OPTS, "size": 32, "margin": 0.5})
    assert small.store.folder != big.store.folder and big[0].image01.shape == (3, 32, 32)


def test_ffpp_official_pairs(tmp_path):
    root = make_ffpp(tmp_path / "ffpp")
    test = create_dataset("ffpp", root=str(root), split="test", methods=("Deepfakes", "FaceSwap"),
                          cache_dir=str(tmp_path / "c"), **{**OPTS, "count": 2})
    videos = sorted(set(test.video_ids))
    assert videos == ["manipulated_sequences/Deepfakes/c23/videos/002_003",
                      "manipulated_sequences/Deepfakes/c23/videos/003_002",
                      "manipulated_sequences/FaceSwap/c23/videos/002_003",
                      "manipulated_sequences/FaceSwap/c23/videos/003_002",
                      "original_sequences/youtube/c23/videos/002", "original_sequences/youtube/c23/videos/003"]
    assert test.labels.count(1) == 8 and test.labels.count(0) == 4  # 2 frames per video
    assert [test[i].frame for i in range(2)] == [0, 3]
    train = create_dataset("ffpp", root=str(root), split="train", methods=("Deepfakes",),
                           cache_dir=str(tmp_path / "c"), **{**OPTS, "count": 2})
    assert min(set(train.video_ids)).endswith("Deepfakes/c23/videos/000_001")
    assert train.labels.count(1) == 4 and train.labels.count(0) == 4


def test_dfdc_paper_test_parts_and_metadata_labels(tmp_path):
    root = make_dfdc(tmp_path / "dfdc")
    test = create_dataset("dfdc", root=str(root), split="test", cache_dir=str(tmp_path / "c"), **OPTS)
    assert sorted(set(test.video_ids)) == ["dfdc_train_part_0/aaa", "dfdc_train_part_0/bbb"]
    assert test.labels == [0, 0, 0, 1, 1, 1]
    assert test.stats["videos_corrupt"] == 1 and test.stats["videos_listed"] == 3
    train = create_dataset("dfdc", root=str(root), split="train", cache_dir=str(tmp_path / "c"), **OPTS)
    assert sorted(set(train.video_ids)) == ["dfdc_train_part_3/ddd", "dfdc_train_part_3/eee"]
    assert train[3].meta["video"] == "dfdc_train_part_3/eee.mp4"


def test_folder_adapter_labels(tmp_path):
    for name, count in (("real", 3), ("fake", 2)):
        for i in range(count):
            (tmp_path / name / "v1").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(tmp_path / name / "v1" / f"{i}.png"), np.full((40, 50, 3), 60 * i, np.uint8))
    ds = create_dataset("folder", root=str(tmp_path), size=32)
    assert ds.labels == [0, 0, 0, 1, 1] and len(ds) == 5
    assert ds[4].label == 1 and ds[4].video_id == "fake/v1" and ds[4].image01.shape == (3, 32, 32)
    assert abs(float(ds[2].image01.mean()) - 120 / 255) < 1e-6


def test_missing_root_is_one_user_error_naming_the_env_var(tmp_path, monkeypatch):
    monkeypatch.delenv("ARTIFACT_BENCH_CELEBDF", raising=False)
    with pytest.raises(UserError, match=r"nowhere.*ARTIFACT_BENCH_CELEBDF"):
        create_dataset("celebdf", root=str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="ARTIFACT_BENCH_FFPP"):
        create_dataset("ffpp")


def test_missing_files_for_an_empty_root(tmp_path):
    celeb = missing_files("celebdf", tmp_path)
    assert [Path(m.path).name for m in celeb] == ["Celeb-real", "YouTube-real", "Celeb-synthesis",
                                                   "List_of_testing_videos.txt"]
    assert all("celeb-deepfakeforensics" in m.where_published for m in celeb)
    ffpp = missing_files("ffpp", tmp_path)
    assert len(ffpp) == 1 + 4 + 3 and ffpp[-1].path.endswith("splits/test.json")
    assert "dataset/splits" in ffpp[-1].where_published
    dfdc = missing_files("dfdc", tmp_path)
    assert [m.path for m in dfdc] == [str(tmp_path / "dfdc_train_part_0/metadata.json"),
                                      str(tmp_path / "dfdc_train_part_49/metadata.json")]
    assert next(Path(m.path).name for m in missing_files("celebdf", tmp_path / "x")) == "x"
    assert missing_files("celebdf", make_celebdf(tmp_path / "full")) == []


def _forbidden(*args, **kwargs):
    raise AssertionError("a video was decoded although its crops are cached")


def test_official_clips_and_random_dfdc_split(tmp_path):
    root = make_dfdc(tmp_path / "dfdc")
    clips = create_dataset("dfdc", root=str(root), split="train", frames="clip", count=1, clip_len=4,
                           size=64, quiet=True, cache_dir=str(tmp_path / "c"))
    assert [clips[i].frame for i in range(len(clips))] == [0, 1, 2, 3] * 2  # 4 consecutive frames each
    from bench.data.dfdc import list_videos

    test = list_videos(root, "test", test_parts=None)
    train = list_videos(root, "train", test_parts=None)
    assert len(test) == 1 and len(train) == 4  # 80/20 of 5 videos, seed 36
    assert not {e.path for e in test} & {e.path for e in train}
    assert test == list_videos(root, "test", test_parts=None)  # the same split every time
