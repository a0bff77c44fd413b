import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data, io
from torch import nn

from bench.errors import UserError
from bench.metrics.identity import (
    ID_BACKENDS,
    DlibBackend,
    IRSE50Backend,
    arcface_points_from_68,
    create_id_backend,
    id_retention,
    irse50_crop,
)
from bench.registry import UnknownNameError

INSIGHTFACE_IMAGES = Path(importlib.util.find_spec("insightface").submodule_search_locations[0]) / "data" / "images"
# dlib HOG boxes (left, top, width, height) of the faces in the offline images
ASTRONAUT_BOX = (175, 76, 91, 91)
T1_BOXES = [(1118, 283, 109, 108), (67, 283, 109, 108), (724, 367, 109, 108), (450, 295, 108, 108),
            (870, 67, 130, 130), (275, 176, 90, 90)]


def face_crop(img: np.ndarray, box, size: int, scale: float = 1.2, shift=(0, 0)) -> torch.Tensor:
    """A square face crop (box enlarged by `scale`, moved by `shift` px) resized to size: (3,size,size) in [0,1]."""
    left, top, w, h = box
    side = round(max(w, h) * scale)
    x0, y0 = round(left + w / 2 + shift[0] - side / 2), round(top + h / 2 + shift[1] - side / 2)
    patch = torch.from_numpy(img[y0:y0 + side, x0:x0 + side, :3].copy()).permute(2, 0, 1).float()[None] / 255
    return F.interpolate(patch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)


@pytest.fixture(scope="module")
def faces():
    astronaut = data.astronaut()
    t1 = io.imread(INSIGHTFACE_IMAGES / "t1.jpg")
    return [(astronaut, ASTRONAUT_BOX)] + [(t1, b) for b in T1_BOXES]


@pytest.fixture(scope="module")
def dlib_backend():
    return create_id_backend("dlib")


def test_offline_face_boxes_are_what_dlib_finds(faces):
    import dlib

    detector = dlib.get_frontal_face_detector()
    found = [(d.left(), d.top(), d.width(), d.height()) for d in detector(faces[1][0][:, :, :3].copy(), 1)]
    assert sorted(found) == sorted(T1_BOXES)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_dlib_same_face_shifted_is_same_and_different_people_differ(faces, dlib_backend, size):
    orig = torch.stack([face_crop(img, box, size) for img, box in faces])
    shifted = torch.stack([face_crop(img, box, size, shift=(4, 3)) for img, box in faces])
    result = id_retention(dlib_backend, orig, shifted)
    distances = -result["similarity"]
    assert result["same"].all() and result["fraction"] == 1.0
    assert distances.max() < 0.4  # same person: dlib's typical 0.2-0.45, tighter for a small shift
    # every pair of different people (7 faces -> 21 pairs) is judged different at 128 and 256 px;
    # at 64 px the descriptor loses detail, so only the astronaut is required to differ from the rest
    emb = dlib_backend.embed(orig)
    pair_dist = torch.cdist(emb.double(), emb.double())
    i, j = torch.triu_indices(len(faces), len(faces), offset=1)
    others = pair_dist[i, j] if size >= 128 else pair_dist[0, 1:]
    assert (others > 0.6).all(), others.min()


def test_dlib_tom_hanks_aligned_crop(faces, dlib_backend):
    hanks = torch.from_numpy(io.imread(INSIGHTFACE_IMAGES / "Tom_Hanks_54745.png")[:, :, :3].copy())
    hanks = hanks.permute(2, 0, 1).float()[None] / 255  # the 112x112 aligned crop of the insightface wheel
    brighter = (hanks * 1.08).clamp(0, 1)
    astronaut = face_crop(*faces[0], 112)[None]
    result = id_retention(dlib_backend, torch.cat([hanks, hanks]), torch.cat([brighter, astronaut]))
    assert result["same"].tolist() == [True, False]
    assert result["fraction"] == 0.5
    assert result["backend"] == "dlib" and result["threshold"] == -0.6


def test_dlib_reuses_original_boxes_for_the_adversarial(faces, dlib_backend):
    orig = face_crop(*faces[0], 128)[None]
    noise = torch.rand(orig.shape, generator=torch.Generator().manual_seed(0))
    adv = (0.3 * orig + 0.7 * noise).clamp(0, 1)  # a face HOG may not find any more
    e_orig, e_adv = dlib_backend.embed_pair(orig, adv)
    boxes = dlib_backend.boxes(orig)
    assert torch.allclose(e_adv, dlib_backend.embed(adv, boxes))
    assert dlib_backend.distance(e_orig, e_adv).item() > 0.6


class RecordingNet(nn.Module):
    """Stand-in for the IR-SE50 backbone: records its input and embeds it by channel means."""

    def __init__(self):
        super().__init__()
        self.seen = None

    def forward(self, x):
        self.seen = x
        return torch.stack([x.mean(dim=(2, 3))[:, 0], torch.ones(len(x)), torch.zeros(len(x))], dim=1) * 3


def test_irse50_crop_window_and_pooling():
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    expected = F.adaptive_avg_pool2d(x[:, :, 35:223, 32:220] * 2 - 1, 112)
    assert torch.equal(irse50_crop(x), expected)
    # other sizes: the window scaled proportionally (128 px: rows round(17.5)=18 : round(111.5)=112, cols 16:110)
    small = x[:, :, ::2, ::2]
    assert torch.equal(irse50_crop(small), F.adaptive_avg_pool2d(small[:, :, 18:112, 16:110] * 2 - 1, 112))
    big = F.interpolate(x, scale_factor=4, mode="nearest")
    assert torch.equal(irse50_crop(big), F.adaptive_avg_pool2d(big[:, :, 140:892, 128:880] * 2 - 1, 112))


def test_irse50_backend_threshold_and_normalisation():
    net = RecordingNet()
    backend = IRSE50Backend(model=net)
    assert backend.threshold == 0.75 and backend.name == "irse50"
    # red channel mean m over the crop -> embedding ~ (2m - 1, 1, 0) normalised
    orig = torch.zeros(3, 3, 256, 256)
    orig[:, 0] = 0.5  # -> (0, 1, 0)
    adv = orig.clone()
    adv[0, 0] = 0.5 + 0.5 * 0.5  # -> (0.5, 1, 0): cos = 1/sqrt(1.25) = 0.894 -> same
    adv[1, 0] = 1.0  # -> (1, 1, 0): cos = 1/sqrt(2) = 0.707 -> different
    result = id_retention(backend, orig, adv)
    assert net.seen.shape == (3, 3, 112, 112)
    assert result["similarity"].tolist() == pytest.approx([1 / 1.25 ** 0.5, 1 / 2 ** 0.5, 1.0], abs=1e-6)
    assert result["same"].tolist() == [True, False, True]
    assert result["fraction"] == pytest.approx(2 / 3)
    assert result["mean_similarity"] == pytest.approx((1 / 1.25 ** 0.5 + 1 / 2 ** 0.5 + 1) / 3, abs=1e-6)
    assert torch.allclose(backend.embed(orig).norm(dim=1), torch.ones(3))


def test_irse50_loads_a_state_dict_through_backbone(tmp_path, monkeypatch):
    """Weights go through bench.models.irse.Backbone.load_state_dict (a stand-in Backbone here)."""
    import sys
    import types

    class FakeBackbone(nn.Module):
        def __init__(self, input_size, num_layers, mode):
            super().__init__()
            assert (input_size, num_layers, mode) == (112, 50, "ir_se")
            self.lin = nn.Linear(3, 4)

        def forward(self, x):
            return self.lin(x.mean(dim=(2, 3)))

    module = types.ModuleType("bench.models.irse")
    module.Backbone = FakeBackbone
    monkeypatch.setitem(sys.modules, "bench.models.irse", module)
    state = FakeBackbone(112, 50, "ir_se").state_dict()
    torch.save(state, tmp_path / "model_ir_se50.pth")
    backend = create_id_backend("auto", weights=str(tmp_path / "model_ir_se50.pth"))
    assert isinstance(backend, IRSE50Backend)
    assert torch.equal(backend.model.lin.weight, state["lin.weight"])
    torch.save({"other": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="not an IR-SE50 state dict"):
        create_id_backend("irse50", weights=str(tmp_path / "bad.pth"))


def test_user_errors_and_registry(monkeypatch):
    with pytest.raises(UserError, match="model_ir_se50.pth"):
        create_id_backend("irse50")
    with pytest.raises(UserError, match="not found"):
        create_id_backend("irse50", weights="/nonexistent/model_ir_se50.pth")
    with pytest.raises(UserError, match="w600k_r50.onnx"):
        create_id_backend("arcface", model_path="w600k_r50.onnx")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "requests" else real_find_spec(name, *a))
    with pytest.raises(UserError, match=r"needs requests: pip install 'artifact-bench\[arcface\]'"):
        create_id_backend("arcface", model_path="w600k_r50.onnx")
    monkeypatch.undo()
    with pytest.raises(UnknownNameError, match="dlib"):
        create_id_backend("dlb")
    assert isinstance(create_id_backend(), DlibBackend)
    assert ID_BACKENDS.names() == ["arcface", "dlib", "irse50"]


def test_arcface_points_from_dlib_68_landmarks(faces):
    import dlib

    from bench.metrics.identity import face_recognition_models_dir

    img, (left, top, w, h) = faces[0]
    predictor = dlib.shape_predictor(str(face_recognition_models_dir() / "shape_predictor_68_face_landmarks.dat"))
    shape = predictor(np.ascontiguousarray(img), dlib.rectangle(left, top, left + w, top + h))
    pts = arcface_points_from_68(np.array([[p.x, p.y] for p in shape.parts()]))
    assert pts.shape == (5, 2)
    left_eye, right_eye, nose, mouth_l, mouth_r = pts
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_l[0] < nose[0] < mouth_r[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_l[1], mouth_r[1])
    assert ((pts[:, 0] > left) & (pts[:, 0] < left + w) & (pts[:, 1] > top) & (pts[:, 1] < top + h)).all()
    # same geometry as insightface's 112 px template: eye distance ~35 px of a 112 crop of a ~1.2x face box
    assert 0.3 < (right_eye[0] - left_eye[0]) / w < 0.5


def test_dlib_originals_are_located_and_described_once_per_image():
    """A matrix compares the same originals with many attacks: the memo must not change results."""
    from skimage import data

    from bench.metrics.identity import DlibBackend, id_retention

    face = torch.from_numpy(data.astronaut()[20:220, 140:340].copy()).permute(2, 0, 1).float() / 255
    orig = torch.nn.functional.interpolate(face[None], size=(96, 96), mode="area").repeat(2, 1, 1, 1)
    orig[1] = orig[1].flip(-1)
    adv = (orig + 0.02).clamp(0, 1)
    backend = DlibBackend()
    calls = []
    locate = backend.locate
    backend.locate = lambda img: calls.append(1) or locate(img)
    first = id_retention(backend, orig, adv)
    second = id_retention(backend, orig, adv.flip(0))  # same originals, another "attack"
    assert len(calls) == 2  # two distinct originals, each located once over both calls
    fresh = id_retention(DlibBackend(), orig, adv.flip(0))
    assert torch.equal(second["similarity"], fresh["similarity"])
    assert first["same"].all()


def test_dlib_descriptors_in_worker_processes_equal_dlib_on_the_whole_image(faces):
    """The pool describes 150 px chips in 2 spawned workers; the result must be bit-identical to
    dlib's compute_face_descriptor(image, landmarks), which cuts the chip itself."""
    import dlib

    from bench.metrics import dlib_descriptors
    from bench.metrics.dlib_descriptors import DescriptorPool, face_chip
    from bench.metrics.identity import face_recognition_models_dir, to_uint8_rgb

    folder = face_recognition_models_dir()
    predictor = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
    model_path = folder / "dlib_face_recognition_resnet_model_v1.dat"
    crops = [face_crop(img, box, 128, shift=(s, -s)) for img, box in faces for s in (0, 3)]  # 14 faces
    images = to_uint8_rgb(torch.stack(crops))
    shapes = [predictor(img, dlib.rectangle(0, 0, 127, 127)) for img in images]
    direct = dlib.face_recognition_model_v1(str(model_path))
    want = np.stack([np.asarray(direct.compute_face_descriptor(img, s)) for img, s in zip(images, shapes)])
    dlib_descriptors.shutdown_workers()
    pool = DescriptorPool(model_path, workers=2)
    got = pool.describe([face_chip(img, s) for img, s in zip(images, shapes)])
    assert (str(model_path), 2) in dlib_descriptors._executors  # 14 chips >= 2 x 4: the workers did the work
    assert got.shape == (14, 128) and np.array_equal(got, want)
    # and the order is kept: the two shifted crops of one face are closer than any two faces
    dist = np.linalg.norm(got[:, None] - got[None], axis=2)
    assert all(dist[2 * k, 2 * k + 1] < 0.4 for k in range(7))


def test_arcface_backend_feeds_the_network_the_aligned_rgb_crop(tmp_path):
    """A toy recognition ONNX (a per-channel-distinct 8x8/8 conv and a linear layer to 512)
    through insightface's model zoo: the embedding must be that net applied to the norm_crop of
    our 5 points, in RGB and scaled to [-1, 1], L2-normalised. A BGR mix-up would show."""
    import onnx
    from insightface.utils import face_align
    from onnx import TensorProto, helper, numpy_helper

    from bench.metrics.identity import to_uint8_rgb

    rng = np.random.default_rng(0)
    w_conv = rng.standard_normal((8, 3, 8, 8)).astype(np.float32) * 0.05
    w_fc = rng.standard_normal((512, 8 * 14 * 14)).astype(np.float32) * 0.05
    nodes = [helper.make_node("Conv", ["data", "w_conv"], ["c"], strides=[8, 8], name="conv0"),
             helper.make_node("Flatten", ["c"], ["f"], name="flatten0"),
             helper.make_node("Gemm", ["f", "w_fc"], ["fc1"], transB=1, name="fc0")]
    graph = helper.make_graph(nodes, "toy_recognition",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, [None, 3, 112, 112])],
                              [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [None, 512])],
                              [numpy_helper.from_array(w_conv, "w_conv"), numpy_helper.from_array(w_fc, "w_fc")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "toy_recognition.onnx")

    backend = create_id_backend("arcface", model_path=str(tmp_path / "toy_recognition.onnx"))
    face = torch.from_numpy(data.astronaut()[20:220, 140:340].copy()).permute(2, 0, 1).float()[None] / 255
    got = backend.embed(face)

    img = to_uint8_rgb(face)[0]
    aligned_bgr = face_align.norm_crop(img[:, :, ::-1].copy(), backend.five_points(img), image_size=112)
    rgb = torch.from_numpy(aligned_bgr[:, :, ::-1].copy()).permute(2, 0, 1).float()[None]
    x = (rgb - 127.5) / 127.5

    def toy(x):
        return F.normalize(F.conv2d(x, torch.from_numpy(w_conv), stride=8).flatten(1) @ torch.from_numpy(w_fc).T)

    assert got.shape == (1, 512)
    assert torch.allclose(got, toy(x), atol=1e-5)
    assert (got - toy(x.flip(1))).abs().max() > 1e-2  # the same crop in BGR gives another embedding
