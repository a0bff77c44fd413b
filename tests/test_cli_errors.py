"""Bad input ends in one clear line, exit code 2, no traceback, and no run folder."""

import pytest
import yaml
from conftest import TINY_MATRIX, run_cli


def _matrix(tmp_path, **changes):
    data = yaml.safe_load(TINY_MATRIX.read_text())
    for key, value in changes.items():
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        if value is None:
            del node[last]
        else:
            node[last] = value
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


CASES = {
    "unknown detector": ({"detectors.checker": {"detector": "xceptoin"}}, ["unknown detector 'xceptoin'", "Did you mean 'xception'"]),
    "unknown attack": ({"attacks.fgsm": {"attack": "pgdd"}}, ["unknown attack 'pgdd'", "Did you mean 'pgd'"]),
    "unknown preset": ({"attacks.fgsm": {"preset": "paper-celbdf"}}, ["unknown preset 'paper-celbdf'", "paper-celebdf"]),
    "wrong type": ({"batch_size": "eight"}, ["key 'batch_size' must be an integer", "'eight'"]),
    "missing dataset root": ({"dataset": {"name": "folder", "root": "/nonexistent/faces"}}, ["/nonexistent/faces"]),
    "unknown key": ({"detectrs": {}}, ["unknown key 'detectrs'"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_matrix_is_one_line_exit_2_and_leaves_nothing(case, tmp_path):
    changes, expected = CASES[case]
    path = _matrix(tmp_path, **changes)
    out = tmp_path / "results"
    proc = run_cli("run", "--matrix", str(path), "--out", str(out), "--quiet")
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: "), proc.stderr
    # one line, except the preflight's list of missing inputs (one indented line per file)
    assert all(line.startswith(("  - ", "Set the")) for line in lines[1:]), proc.stderr
    assert "Traceback" not in proc.stderr
    for text in expected:
        assert text in proc.stderr
    assert not out.exists() or not any(out.rglob("*"))


def test_malformed_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ndetectors: [unclosed\n")
    proc = run_cli("run", "--matrix", str(path), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "is not valid YAML" in proc.stderr and "line" in proc.stderr


def test_unknown_matrix_name_suggests():
    proc = run_cli("run", "--matrix", "tinyy_matrix_nope")
    assert proc.returncode == 2 and "unknown matrix" in proc.stderr


def test_export_of_a_non_run_folder(tmp_path):
    proc = run_cli("export", str(tmp_path))
    assert proc.returncode == 2 and "is not a run folder" in proc.stderr


def test_env_expansion_and_missing_variable(tmp_path, monkeypatch):
    from bench.config import load_matrix
    from bench.errors import UserError

    path = _matrix(tmp_path, **{"dataset.n": None})
    text = path.read_text().replace("size: 32", "size: ${TINY_SIZE:-48}")
    path.write_text(text)
    assert load_matrix(str(path)).dataset.options["size"] == 48
    monkeypatch.setenv("TINY_SIZE", "40")
    assert load_matrix(str(path)).dataset.options["size"] == 40
    path.write_text(text.replace("${TINY_SIZE:-48}", "${NOT_SET_ANYWHERE}"))
    with pytest.raises(UserError, match="NOT_SET_ANYWHERE"):
        load_matrix(str(path))


@pytest.mark.parametrize("matrix", ["celebdf", "ffpp", "dfdc"])
def test_paper_matrix_without_data_lists_every_missing_file(matrix, tmp_path):
    proc = run_cli("run", "--matrix", matrix, "--out", str(tmp_path / "r"), cwd=tmp_path,
                   env={"ARTIFACT_BENCH_WEIGHTS": str(tmp_path / "weights")})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "nothing was run" in proc.stderr
    for name in ("efficientnet_b4.pth", "xception.pth", "mat.pth", "recce.pth", "e4e_finetuned.pt", "model_ir_se50.pth"):
        assert name in proc.stderr
    assert "root folder" in proc.stderr  # the dataset tree, with where it is published
    assert not (tmp_path / "r").exists()
