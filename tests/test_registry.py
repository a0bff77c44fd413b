import subprocess
import sys
import textwrap

import pytest
import yaml
from conftest import ROOT, TINY_MATRIX, run_cli

from bench.registry import ATTACKS, DETECTORS, Registry, UnknownNameError, create_attack, create_detector


def test_builtins_are_registered_with_their_origin():
    for name in ("fgsm", "pgd", "mifgsm"):
        assert name in ATTACKS
        assert ATTACKS.get(name).origin.startswith("builtin:attacks.")
    assert DETECTORS.get("checkerboard_energy").origin == "builtin:detectors.handcrafted"


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="Did you mean 'mifgsm'"):
        create_attack("mifgs")
    with pytest.raises(UnknownNameError, match="unknown detector 'zzzz'.*Known: "):
        create_detector("zzzz")


def test_presets_are_data_and_kwargs_override_them():
    atk = create_attack("pgd", preset="paper-celebdf", steps=3)
    budget = atk.budget()
    assert budget["steps"] == 3
    assert budget["eps"] == pytest.approx(0.05)  # paper boundary 0.1 in [-1,1] units


def test_a_broken_builtin_module_is_reported_and_others_still_load(tmp_path, monkeypatch):
    pkg = tmp_path / "fake_builtins"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text(textwrap.dedent("""
        from bench.registry import Registry
        THINGS = Registry("things", ())
    """))
    (pkg / "broken.py").write_text("import a_module_that_does_not_exist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("things", ("fake_builtins",))

    @reg.register("early")
    def early():
        return 1

    assert reg.names() == ["early"]  # the good module and the decorator still work
    assert list(reg.broken) == ["fake_builtins.broken"]
    assert "a_module_that_does_not_exist" in reg.broken["fake_builtins.broken"]


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    """The example plugin, installed into its own folder (no effect on the environment)."""
    target = tmp_path_factory.mktemp("plugin")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--target", str(target), str(ROOT / "examples" / "plugin-detector")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return target


def test_example_plugin_shows_up_in_bench_list_and_runs_in_a_matrix(plugin_path, tmp_path):
    env = {"PYTHONPATH": f"{plugin_path}:{ROOT}"}
    listed = run_cli("list", env=env)
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith("saturation"))
    assert "plugin:artifact-bench-example-plugin" in line
    assert "fgsm" in listed.stdout and "pgd" in listed.stdout and "mifgsm" in listed.stdout

    data = yaml.safe_load(TINY_MATRIX.read_text())
    data["detectors"]["sat"] = {"detector": "saturation", "input_size": 32}
    data["attacks"] = {"fgsm": {"eps": 0.035}}
    data["sources"] = ["checker"]
    matrix = tmp_path / "plugin.yaml"
    matrix.write_text(yaml.safe_dump(data))
    ran = run_cli("run", "--matrix", str(matrix), "--out", str(tmp_path / "r"), "--quiet", env=env)
    assert ran.returncode == 0, ran.stderr
    asr = (tmp_path / "r").rglob("asr_fgsm.csv").__next__().read_text()
    assert "sat" in asr.splitlines()[0]  # the plugin detector is a target column


def test_a_broken_plugin_is_named_and_the_rest_keep_working(tmp_path):
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[artifact_bench.detectors]\nbroken = no_such_module:factory\n")
    listed = run_cli("list", env={"PYTHONPATH": f"{tmp_path}:{ROOT}"})
    assert listed.returncode == 0, listed.stderr
    assert "broken (broken-plugin)" in listed.stdout and "FAILED TO LOAD" in listed.stdout
    assert "checkerboard_energy" in listed.stdout
