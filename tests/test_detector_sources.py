"""Checkpoint sources as presets (detectors/sources.py): their metadata, the one-line error that
names the closest preset, and the report / refusal of non-strict loading."""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import run_cli

from bench.errors import UserError
from bench.registry import create_detector
from detectors.sources import SOURCES, sources_of
from tests.detector_fill import filled_state_dict

X01 = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_every_source_is_a_preset_of_its_family_and_bench_list_shows_them():
    from typer.testing import CliRunner

    from bench.cli import app

    listed = CliRunner().invoke(app, ["list"])
    assert listed.exit_code == 0, listed.output
    for family in ("efficientnet_b4", "efficientnet_b7", "xception", "recce"):
        line = next(line for line in listed.stdout.splitlines() if line.startswith(family + " "))
        for source in sources_of(family):
            assert source in line, (family, source)
    sources = listed.stdout.split("== detector checkpoint sources", 1)[1].splitlines()[1:]
    assert len([line for line in sources if "preset=" in line]) == len(SOURCES) == 9
    assert any(line.startswith("recce") and "{'model': ...}" in line and "299 px" in line for line in sources)


def test_source_presets_set_input_head_and_scoring_rule():
    official = create_detector("recce", preset="official", width=0.125, middle_blocks=2)
    assert official.input_size == 299 and official.fc.out_features == 1 and official.p_fake_rule == "softmax"
    eraser = create_detector("recce", preset="artifact-eraser", width=0.125, middle_blocks=2, input_size=64)
    assert eraser.fc.out_features == 2 and eraser.p_fake_rule == "sigmoid"
    with torch.no_grad():  # a head whose two rules differ clearly: logits [1, 2] whatever the input
        eraser.fc.weight.zero_()
        eraser.fc.bias.copy_(torch.tensor([1.0, 2.0]))
        logits = eraser(X01)
        # Artifact-Eraser's attack scores RECCE with an element-wise sigmoid, column 1 = fake
        assert torch.allclose(eraser.p_fake(X01), torch.sigmoid(logits[:, 1]))
        assert torch.allclose(eraser.p_fake(X01), torch.full((len(X01),), 0.8808), atol=1e-4)  # not softmax's 0.7311
    with torch.device("meta"):  # shapes only: the full B7 takes seconds to initialise
        b7 = create_detector("efficientnet_b7", preset="artifact-eraser")
    assert b7.net.classifier.in_features == 2560 and b7.input_size == 256


@pytest.fixture(scope="module")
def deepfakebench_xception(tmp_path_factory):
    """DeepfakeBench's Xception detector file (filled by the parity rule), as its trainer saves it."""
    path = tmp_path_factory.mktemp("dfb") / "xception_best.pth"
    torch.save(filled_state_dict("deepfakebench_xception", 1.0), path)
    return path


def test_wrong_preset_names_the_preset_the_file_is_of(deepfakebench_xception):
    for kwargs in ({"preset": "artifact-eraser"}, {}):
        with pytest.raises(UserError) as err:
            create_detector("xception", checkpoint=str(deepfakebench_xception), **kwargs)
        message = str(err.value)
        assert "\n" not in message
        assert message.startswith(f"checkpoint {str(deepfakebench_xception)!r} is a xception file of source "
                                  "'deepfakebench', not of xception(")
        assert message.endswith(": pass preset='deepfakebench'")
    assert create_detector("xception", preset="deepfakebench", checkpoint=str(deepfakebench_xception))


def test_file_that_fits_no_preset_names_the_closest_and_its_first_differing_keys(deepfakebench_xception, tmp_path):
    sd = torch.load(deepfakebench_xception)
    damaged = {k: v for k, v in sd.items() if not k.startswith("backbone.block12.")}
    damaged["backbone.extra.weight"] = torch.zeros(3)
    torch.save(damaged, tmp_path / "damaged.pth")
    with pytest.raises(UserError) as err:
        create_detector("xception", preset="artifact-eraser", checkpoint=str(tmp_path / "damaged.pth"))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"checkpoint {str(tmp_path / 'damaged.pth')!r} fits no xception preset; "
                              "closest: 'deepfakebench' (missing 20: net.block12.skip.weight, ")
    assert "unexpected 1: net.extra.weight)" in message


# -- non-strict loading ------------------------------------------------------------------------
def _tiny_xception_file(tmp_path, drop: tuple[str, ...] = ()) -> str:
    torch.manual_seed(1)
    det = create_detector("xception", preset="tiny", input_size=32)
    path = tmp_path / "partial.pth"
    torch.save({k: v for k, v in det.state_dict().items() if not k.startswith(drop)}, path)
    return str(path)


def test_non_strict_load_reports_counts_and_untouched_modules(tmp_path, capsys):
    path = _tiny_xception_file(tmp_path, drop=("net.block2.rep.2.", "net.bn3.running_var"))
    det = create_detector("xception", preset="tiny", input_size=32, checkpoint=path, strict=False)
    note = capsys.readouterr().err.strip()
    assert note == (f"note: non-strict load of {path!r} into xception(width=0.125, middle_blocks=1, input_size=32): "
                    "loaded 105 of 110 tensors; at initial values: net.block2.rep.2")
    assert torch.equal(det.net.bn3.running_var, torch.ones_like(det.net.bn3.running_var))  # kept its init


def _tiny_recce_file(tmp_path) -> str:
    path = tmp_path / "recce.pth"
    torch.save(create_detector("recce", preset="tiny").state_dict(), path)
    return str(path)


@pytest.mark.parametrize("other_family", [False, True])
def test_non_strict_load_refuses_a_whole_uninitialised_component(tmp_path, other_family):
    path = _tiny_recce_file(tmp_path) if other_family else _tiny_xception_file(tmp_path, drop=("net.fc.",))
    named = "net.conv1, net.bn1, net.conv2, net.bn2, net.block1 \\(\\+9 more\\)" if other_family else "net.fc"
    with pytest.raises(UserError, match=f"leaves {named}.* entirely at initial values"):
        create_detector("xception", preset="tiny", input_size=32, checkpoint=path, strict=False)


@pytest.mark.slow  # ~7 s of CPU, one `bench run` in a fresh interpreter
def test_bench_run_reports_a_partial_load(tmp_path):
    matrix = {"name": "partial", "seed": 1, "batch_size": 4, "shard_size": 4, "device": "cpu",
              "dataset": {"name": "synthetic", "n": 4, "size": 32},
              "detectors": {"x": {"detector": "xception", "preset": "tiny", "input_size": 32, "strict": False,
                                  "checkpoint": _tiny_xception_file(tmp_path, drop=("net.block2.rep.2.",))}},
              "attacks": {"fgsm": {"eps": 0.035}}, "metrics": {"mode": "paper", "bootstrap": 10, "quality": []}}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(matrix))
    ran = run_cli("run", "--matrix", str(tmp_path / "m.yaml"), "--out", str(tmp_path / "out"), "--quiet", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "loaded 106 of 110 tensors; at initial values: net.block2.rep.2" in ran.stderr



def test_source_drops_only_keys_the_model_does_not_keep():
    from detectors.checkpoints import apply_source
    from detectors.sources import get_source

    mat = get_source("mat", "official")  # drops net._fc.* and auxiliary_loss.*
    sd = {"net._fc.weight": torch.zeros(1), "auxiliary_loss.alpha": torch.zeros(()), "net._bn0.weight": torch.zeros(1)}
    assert list(apply_source(sd, mat)) == ["net._bn0.weight"]
    # a model that keeps its training-only buffers gets them loaded, not dropped
    assert list(apply_source(sd, mat, {"auxiliary_loss.alpha"})) == ["auxiliary_loss.alpha", "net._bn0.weight"]
    recce = get_source("recce", "deepfakebench")  # drops backbone.*, peels model.
    assert list(apply_source({"backbone.conv1.weight": 0, "model.fc.bias": 1}, recce)) == ["fc.bias"]
