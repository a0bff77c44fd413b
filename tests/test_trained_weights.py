"""A detector trained with `bench train-detector` (NAME.safetensors) stands in for the missing
publisher file NAME.pth that a shipped matrix names."""

import yaml
from conftest import TINY_MATRIX


def test_a_missing_pth_uses_its_trained_safetensors_twin(tmp_path, capsys):
    from bench.config import load_matrix

    (tmp_path / "celebdf_xception.safetensors").write_bytes(b"weights")
    data = yaml.safe_load(TINY_MATRIX.read_text())
    data["detectors"] = {"xception": {"checkpoint": str(tmp_path / "celebdf_xception.pth")},
                         "mat": {"checkpoint": str(tmp_path / "celebdf_mat.pth")}}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_matrix(str(path))
    by_label = {d.label: d.kwargs["checkpoint"] for d in cfg.detectors}
    assert by_label == {"xception": str(tmp_path / "celebdf_xception.safetensors"),
                        "mat": str(tmp_path / "celebdf_mat.pth")}  # no twin: still reported missing later
    assert "detectors.xception:" in capsys.readouterr().err
