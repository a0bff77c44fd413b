"""Bad input and hostile files, run through the `bench` command as a user would (issue #14).

Every case asserts: exit code 2 (130 for Ctrl-C), exactly one `error:` line on stderr and no
traceback, the culprit named, and, for everything knowable up front, no file under --out.
The malicious-pickle cases assert that the pickle's payload (creating a marker file) never runs.
"""

from __future__ import annotations

import copy
import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, run_cli

from bench.cli import main
from bench.trust import allow_full_unpickle

FAST = {
    "name": "fast", "seed": 0, "batch_size": 4, "shard_size": 4, "device": "cpu",
    "dataset": {"name": "synthetic", "n": 8, "size": 32},
    "detectors": {"det": {"detector": "tiny_cnn", "width": 4, "input_size": 32, "seed": 0}},
    "attacks": {"fgsm": {"eps": 0.03}},
    "metrics": {"mode": "paper", "bootstrap": 10, "quality": []},
}


class Marker:
    """Unpickling this object creates a file: the proof that unpickling ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(autouse=True)
def _no_trust_leaks():
    yield
    allow_full_unpickle(False)  # an in-process `--trust-checkpoint` must not reach later tests


def write_matrix(tmp_path: Path, changes: dict | None = None, name: str = "m.yaml") -> Path:
    data = copy.deepcopy(FAST)
    for key, value in (changes or {}).items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def bench(capsys, *args: str) -> tuple[int, str, str]:
    """`bench ARGS` in this process: (exit code, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def bench_run(capsys, matrix: Path, out: Path, *flags: str) -> tuple[int, str, str]:
    return bench(capsys, "run", "--matrix", str(matrix), "--out", str(out), "--quiet", *flags)


def assert_one_error(code: int, err: str, *culprits: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err, err
    assert lines and lines[0].startswith("error: "), err  # nothing (no torch warning) before it
    assert sum(line.startswith("error:") for line in lines) == 1, err
    for culprit in culprits:
        assert culprit in err, (culprit, err)
    return lines[0]


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")) if folder.exists() else []


def evil_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    from bench.registry import create_detector

    marker = tmp_path / "pwned"
    det = create_detector("tiny_cnn", width=4, input_size=32, seed=0)
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": det.state_dict(), "payload": Marker(marker)}, path)
    return path, marker


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory) -> Path:
    """One finished run of the fast matrix (for explain/export cases)."""
    from bench.config import load_matrix
    from bench.runner import run_matrix

    folder = tmp_path_factory.mktemp("fast")
    return run_matrix(load_matrix(str(write_matrix(folder))), out_root=folder / "results", quiet=True).root


# -- 1. code execution -------------------------------------------------------------------------
@pytest.mark.parametrize("trust_key", [True, False], ids=["matrix says trust", "no opt-in"])
def test_pickle_needing_code_never_runs_from_a_matrix(tmp_path, capsys, trust_key):
    evil, marker = evil_checkpoint(tmp_path)
    options = {"detector": "tiny_cnn", "width": 4, "input_size": 32, "checkpoint": str(evil)}
    path = write_matrix(tmp_path, {"detectors.det": {**options, "trust_checkpoint": True} if trust_key else options})
    out = tmp_path / "results"
    code, _, err = bench_run(capsys, path, out)
    if trust_key:  # refused at load, naming the matrix file and the key, before the file is touched
        assert_one_error(code, err, f"{path}: detectors.det", "'trust_checkpoint' is not an option", "--trust-checkpoint")
    else:
        assert_one_error(code, err, str(evil), "needs arbitrary code", "--trust-checkpoint")
    assert not marker.exists()
    assert files_under(out) == []


def test_trust_checkpoint_flag_unpickles_with_a_warning_and_keeps_it_out_of_the_manifest(tmp_path, capsys):
    evil, marker = evil_checkpoint(tmp_path)
    out = tmp_path / "results"
    path = write_matrix(tmp_path, {"detectors.det.checkpoint": str(evil)})
    code, stdout, err = bench_run(capsys, path, out, "--trust-checkpoint")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(evil) in warnings[0] and "fully unpickling" in warnings[0]
    assert marker.exists()  # the payload is real: the flag, and only the flag, lets it run
    manifest = (Path(stdout.strip().splitlines()[-1]) / "manifest.json").read_text()
    assert '"trust_checkpoint"' not in manifest  # neither stored as an option nor as a flag


@pytest.mark.parametrize("with_trust_key", [True, False], ids=["manifest says trust", "evil checkpoint only"])
def test_explain_of_an_edited_manifest_runs_no_pickle(fast_run, tmp_path, capsys, with_trust_key):
    evil, marker = evil_checkpoint(tmp_path)
    run = tmp_path / "received"
    shutil.copytree(fast_run, run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["config"]["detectors"][0]["kwargs"]["checkpoint"] = str(evil)
    if with_trust_key:
        manifest["config"]["detectors"][0]["kwargs"]["trust_checkpoint"] = True
    (run / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = bench(capsys, "explain", str(run), "--quiet", "--n", "1")
    if with_trust_key:
        assert_one_error(code, err, "manifest.json", "'trust_checkpoint' is not an option", "--trust-checkpoint")
    else:
        assert_one_error(code, err, str(evil), "needs arbitrary code", "--trust-checkpoint")
    assert not marker.exists()
    assert not (run / "figures" / "explain").exists()


# -- 2. path escape ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../escaped", "ABSOLUTE", "a/b", "..", ""])
def test_matrix_name_must_be_one_folder_name(tmp_path, capsys, name):
    absolute = tmp_path / "absolute-escape"
    name = str(absolute) if name == "ABSOLUTE" else name
    path = write_matrix(tmp_path, {"name": name})
    out = tmp_path / "deep" / "er" / "results"
    code, _, err = bench_run(capsys, path, out)
    assert_one_error(code, err, "key 'name' must be one plain folder name", repr(name))
    assert not (tmp_path / "deep").exists() and not (tmp_path / "escaped").exists()
    assert not absolute.exists()


# -- 3. usage errors and Ctrl-C ----------------------------------------------------------------
@pytest.mark.parametrize("args, culprit", [
    (["run", "--limit", "0"], "--limit"),
    (["run", "--limit", "abc"], "--limit"),
    (["run", "--bogus"], "--bogus"),
    (["explain"], "run_dir"),
    (["export"], "run_dir"),
    (["run", "--matrix"], "--matrix"),
    (["frobnicate"], "frobnicate"),
], ids=["limit 0", "limit abc", "unknown option", "explain no arg", "export no arg", "option no value",
        "unknown command"])
def test_usage_errors_are_one_line_exit_2(capsys, args, culprit):
    code, _, err = bench(capsys, *args)
    assert_one_error(code, err, culprit, "--help")


def test_usage_error_from_the_installed_console_script_is_one_line(tmp_path):
    proc = run_cli("run", "--limit", "abc")
    assert_one_error(proc.returncode, proc.stderr, "--limit")


def test_ctrl_c_exits_130_with_how_to_resume(tmp_path):
    # long enough (about a minute) that the signal always lands mid-compute, never after the run
    path = write_matrix(tmp_path, {"dataset.n": 64, "attacks": {"pgd": {"eps": 0.03, "step": 0.005, "steps": 20000}}})
    out = tmp_path / "results"
    args = ["run", "--matrix", str(path), "--out", str(out), "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", *args], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(out.glob("fast/*/manifest.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("interrupted:"), err
    assert "run the same command again to resume: bench " + " ".join(args) in lines[0]


# -- 5. the detector contract ------------------------------------------------------------------
@pytest.mark.parametrize("make_logits, culprit", [
    (lambda z: torch.cat([z, z[:, :1]], dim=1), "shape (2, 3)"),
    (lambda z: z[:, 1], "shape (2,)"),
    (lambda z: torch.where(torch.arange(len(z))[:, None] == 0, torch.full_like(z, float("nan")), z),
     "non-finite logits (NaN or inf) in 1 of 2 rows"),
], ids=["three classes", "one logit", "nan row"])
def test_detector_contract_is_checked_before_any_work(tmp_path, capsys, monkeypatch, make_logits, culprit):
    from detectors.tiny import TinyCNN

    original = TinyCNN.classify
    monkeypatch.setattr(TinyCNN, "classify", lambda self, xn: make_logits(original(self, xn)))
    out = tmp_path / "results"
    code, _, err = bench_run(capsys, write_matrix(tmp_path), out)
    assert_one_error(code, err, "detector 'det'", culprit)
    assert files_under(out) == []


def test_pixel_attack_entry_checks_the_logits():
    from attacks._common import TwoWayLogits
    from bench.errors import UserError

    class NaNDetector(torch.nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 2), float("inf"))

    with pytest.raises(UserError, match=r"'NaNDetector' returned non-finite logits .* in 3 of 3 rows"):
        TwoWayLogits(NaNDetector())(torch.rand(3, 3, 8, 8))


# -- 6. values, inputs, output folders ---------------------------------------------------------
VALUE_CASES = {
    "steps 2.5": ({"attacks": {"pgd": {"eps": 0.03, "steps": 2.5}}}, "attacks.pgd.steps must be a whole number >= 1, got 2.5"),
    "steps 0": ({"attacks": {"pgd": {"eps": 0.03, "steps": 0}}}, "attacks.pgd.steps must be a whole number >= 1, got 0"),
    "steps -3": ({"attacks": {"pgd": {"eps": 0.03, "steps": -3}}}, "attacks.pgd.steps must be a whole number >= 1, got -3"),
    "eps -0.1": ({"attacks": {"fgsm": {"eps": -0.1}}}, "attacks.fgsm.eps must be a number in [0, 1]"),
    "eps 2": ({"attacks": {"fgsm": {"eps": 2}}}, "attacks.fgsm.eps must be a number in [0, 1]"),
    "step 0": ({"attacks": {"pgd": {"eps": 0.03, "step": 0}}}, "attacks.pgd.step must be a number in (0, 1]"),
    "bootstrap -5": ({"metrics.bootstrap": -5}, "metrics.bootstrap must be a whole number >= 0, got -5"),
    "explain n abc": ({"explain": {"n": "abc"}}, "explain.n must be a whole number >= 1, got 'abc'"),
    "synthetic n 1": ({"dataset.n": 1}, "dataset.n must be a whole number >= 2"),
    "explain unknown attack": ({"explain": {"attacks": ["pgdd"]}}, "explain.attacks names 'pgdd'"),
}


@pytest.mark.parametrize("case", sorted(VALUE_CASES))
def test_out_of_range_values_fail_at_load(tmp_path, capsys, case):
    changes, message = VALUE_CASES[case]
    path = write_matrix(tmp_path, changes)
    out = tmp_path / "results"
    code, _, err = bench_run(capsys, path, out)
    assert_one_error(code, err, str(path), message)
    assert files_under(out) == []


def _faces(tmp_path: Path, sizes: dict[str, tuple[int, int]]) -> Path:
    root = tmp_path / "faces"
    for rel, (h, w) in sizes.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), np.full((h, w, 3), 128, np.uint8))
    return root


def _run_folder_matrix(tmp_path, capsys, root: Path, size):
    path = write_matrix(tmp_path, {"dataset": {"name": "folder", "root": str(root), "size": size}})
    out = tmp_path / "results"
    code, _, err = bench_run(capsys, path, out)
    return code, err, out


def test_mixed_image_sizes_without_resize(tmp_path, capsys):
    root = _faces(tmp_path, {"real/a.png": (32, 32), "fake/b.png": (32, 32), "fake/c.jpg": (40, 32)})
    code, err, out = _run_folder_matrix(tmp_path, capsys, root, None)
    assert_one_error(code, err, str(root / "fake" / "c.jpg"), "32x40", "size: null")
    assert files_under(out) == []


def test_image_over_the_decoder_pixel_limit(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPENCV_IO_MAX_IMAGE_PIXELS", "1000")
    root = _faces(tmp_path, {"real/a.png": (16, 16), "fake/big.png": (32, 64)})
    code, err, out = _run_folder_matrix(tmp_path, capsys, root, 32)
    assert_one_error(code, err, str(root / "fake" / "big.png"), "64x32", "limit of 1000")
    assert files_under(out) == []


def test_every_image_header_is_checked_up_front(tmp_path, capsys):
    root = _faces(tmp_path, {"real/a.png": (32, 32), "fake/b.png": (32, 32)})
    (root / "fake" / "zz_broken.png").write_text("not an image")
    code, err, out = _run_folder_matrix(tmp_path, capsys, root, 32)
    assert_one_error(code, err, str(root / "fake" / "zz_broken.png"), "not a readable")
    assert files_under(out) == []


def _e4e_matrix(tmp_path, checkpoint: Path) -> Path:
    return write_matrix(tmp_path, {"attacks": {"eraser": {"preset": "clean", "steps": 1,
                                                          "checkpoint": str(checkpoint)}}})


@pytest.mark.parametrize("kind", ["corrupt", "foreign", "safetensors"])
def test_bad_e4e_checkpoint_is_one_line(tmp_path, capsys, kind):
    bad = tmp_path / "e4e.pt"
    if kind == "corrupt":
        bad.write_bytes(b"PK\x03\x04" + bytes(range(200)))
    elif kind == "foreign":
        torch.save({"weights": torch.zeros(3)}, bad)
    else:
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(3)}, str(bad))
    out = tmp_path / "results"
    code, _, err = bench_run(capsys, _e4e_matrix(tmp_path, bad), out)
    expected = {"corrupt": "not a readable torch checkpoint", "foreign": "is not an e4e checkpoint",
                "safetensors": "is a safetensors file, but a torch checkpoint"}[kind]
    assert_one_error(code, err, str(bad), expected)
    assert "arbitrary code" not in err
    assert files_under(out) == []


def test_foreign_irse50_file_fails_before_the_run_folder(tmp_path, capsys):
    bad = tmp_path / "model_ir_se50.pth"
    torch.save([1, 2, 3], bad)
    path = write_matrix(tmp_path, {"metrics.identity": "irse50", "metrics.identity_options": {"weights": str(bad)}})
    out = tmp_path / "results"
    code, _, err = bench_run(capsys, path, out)
    assert_one_error(code, err, str(bad), "is not an IR-SE50 state dict")
    assert files_under(out) == []


def test_safetensors_named_pt_loads_as_detector_weights(tmp_path, capsys):
    from safetensors.torch import save_file

    from bench.registry import create_detector

    det = create_detector("tiny_cnn", width=4, input_size=32, seed=3)
    path = tmp_path / "weights.pt"
    save_file({k: v.contiguous() for k, v in det.state_dict().items()}, str(path))
    loaded = create_detector("tiny_cnn", width=4, input_size=32, checkpoint=str(path))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), det(x))


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_out_that_is_a_file(tmp_path, capsys, where):
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    out = blocker if where == "file" else blocker / "results"
    code, _, err = bench_run(capsys, write_matrix(tmp_path), out)
    assert_one_error(code, err, "--out", str(out), "give a folder")
    assert blocker.read_text() == "x"


def test_out_that_is_not_writable(tmp_path, capsys, monkeypatch):
    from bench import preflight

    monkeypatch.setattr(preflight.os, "access", lambda path, mode: False)  # tests run as root
    out = tmp_path / "results"
    code, _, err = bench_run(capsys, write_matrix(tmp_path), out)
    assert_one_error(code, err, "--out", str(out), "is not writable")
    assert files_under(out) == []


def test_cache_env_that_is_a_file(tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache-file"
    cache.write_text("x")
    monkeypatch.setenv("ARTIFACT_BENCH_CACHE", str(cache))
    out = tmp_path / "results"
    code, _, err = bench_run(capsys, write_matrix(tmp_path), out)
    assert_one_error(code, err, "ARTIFACT_BENCH_CACHE", str(cache), "is a file")
    assert files_under(out) == []


def test_export_to_a_missing_folder(fast_run, tmp_path, capsys):
    target = tmp_path / "no" / "such" / "table.md"
    code, _, err = bench(capsys, "export", str(fast_run), "--to", str(target))
    assert_one_error(code, err, "--to", str(target.parent), "does not exist")
    assert not (tmp_path / "no").exists()


def test_full_disk_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    import pyarrow.parquet as pq

    def no_space(table, where, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", no_space)  # shards (and pandas' to_parquet) write through it
    out = tmp_path / "results"
    code, _, err = bench_run(capsys, write_matrix(tmp_path), out)
    line = assert_one_error(code, err, "No space left on device", "cannot write", str(out))
    assert "shards/clean/det/00000.parquet" in line
    assert not [p for p in files_under(out) if ".tmp-" in p.name]  # no half-written shard left


def test_library_warnings_come_after_the_error_line(tmp_path, capsys, monkeypatch):
    import warnings

    from detectors.tiny import TinyCNN

    def warn_then_break(self, xn):
        warnings.warn("TypedStorage is deprecated (a library warning)", UserWarning, stacklevel=1)
        return torch.zeros(xn.shape[0], 3)

    monkeypatch.setattr(TinyCNN, "classify", warn_then_break)
    out = tmp_path / "results"
    code, _, err = bench_run(capsys, write_matrix(tmp_path), out)
    assert_one_error(code, err, "detector 'det'", "shape (2, 3)")
    assert err.splitlines()[1] == "warning: UserWarning: TypedStorage is deprecated (a library warning)"


# -- 7. one run per run folder -----------------------------------------------------------------
def test_second_run_on_a_locked_run_folder_exits_with_one_line(tmp_path, capsys):
    from bench.config import load_matrix
    from bench.identity import identity_key, run_identity
    from bench.store import run_id_of, run_root_of

    path = write_matrix(tmp_path)
    out = tmp_path / "results"
    cfg = load_matrix(str(path))
    root = run_root_of(out, cfg.name, run_id_of(identity_key(run_identity(cfg, cfg.limit))))
    lock = out / ".locks" / f"{root.parent.name}.{root.name}.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "a+") as held:  # what a first `bench run` holds
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("pid 4242")
        held.flush()
        code, _, err = bench_run(capsys, path, out)
    assert_one_error(code, err, str(root), "being written by another `bench run` (pid 4242)")
    assert not root.exists()
    code, _, err = bench_run(capsys, path, out)
    assert code == 0, err  # the lock is gone with its holder
