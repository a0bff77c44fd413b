"""``ensemble: leave-one-out``: a source row whose set for target t is made on the mean logits of
every other detector; t never takes part in making it, and its shards resume like any other."""

import math

import pandas as pd
import pytest
import torch
import yaml
from conftest import TINY_MATRIX, run_cli
from torch import nn

from bench.config import load_matrix
from bench.ensemble import ENSEMBLE, ensemble_set, leave_one_out, left_out
from bench.runner import MatrixRun, build, dequantize, merge_records, open_run
from bench.store import RunStore
from bench.types import Attack, AttackOutput, Detector, p_fake_from_logits

# three detectors that disagree (so a set read for the wrong target would show), two attacks
THREE = {
    "name": "ens", "seed": 3, "batch_size": 4, "shard_size": 4, "device": "cpu",
    "dataset": {"name": "synthetic", "n": 16, "size": 32},
    "detectors": {"checker": {"detector": "checkerboard_energy", "input_size": 32},
                  "laplace": {"detector": "laplacian_energy", "input_size": 32},
                  "cnn": {"detector": "tiny_cnn", "width": 4, "input_size": 32, "seed": 1}},
    "attacks": {"fgsm": {"eps": 0.035}, "pgd": {"eps": 0.035, "step": 0.01, "steps": 2}},
    "metrics": {"mode": "paper", "bootstrap": 50, "quality": ["tv", "psnr"]},
    "ensemble": "leave-one-out",
}


def write(tmp_path, data, name="m.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Fixed(Detector):
    """Hand-built logits: the same row for every image."""

    def __init__(self, logits, rule="softmax"):
        super().__init__(input_size=8)
        self.row, self.p_fake_rule = torch.tensor(logits), rule

    def forward(self, x01):
        return self.row.expand(len(x01), 2).clone()


class Raises(Detector):
    def forward(self, x01):
        raise AssertionError("the left-out detector was called")


def test_ensemble_logits_are_the_mean_of_the_others_in_softmax_form():
    members = {"a": Fixed([1.0, 3.0]), "b": Fixed([-2.0, 0.5]), "t": Raises(), "r": Fixed([4.0, -1.0], "sigmoid")}
    ens = leave_one_out(members, "t")
    x = torch.rand(2, 3, 8, 8)
    logits = ens(x)
    # "r" scores sigmoid(column 1): its softmax form is [0, -1]
    expected = torch.tensor([(1.0 - 2.0 + 0.0) / 3, (3.0 + 0.5 - 1.0) / 3])
    assert torch.allclose(logits, expected.expand(2, 2))
    # p_fake = sigmoid(mean fake log-odds) = sigmoid((2 + 2.5 - 1) / 3)
    assert torch.allclose(ens.p_fake(x), torch.full((2,), 1 / (1 + math.exp(-3.5 / 3))))
    assert torch.allclose(p_fake_from_logits(logits), ens.p_fake(x))
    assert ens.arch["name"] == "ensemble for t (a + b + r)"
    # with two detectors the ensemble for one is the other, logit for logit
    pair = leave_one_out({"a": Fixed([1.0, 3.0]), "t": Raises()}, "t")
    assert torch.equal(pair(x), torch.tensor([[1.0, 3.0], [1.0, 3.0]]))


class Guarded(nn.Module):
    """A run detector that raises when called while the ensemble set for its own label is being
    made, and notes which detectors each ensemble set was made with."""

    def __init__(self, label: str, inner: nn.Module, making: dict):
        super().__init__()
        self.label, self.inner, self.making = label, inner, making
        self.p_fake_rule = getattr(inner, "p_fake_rule", "softmax")

    def forward(self, x01):
        target = self.making.get("for")
        if target == self.label:
            raise AssertionError(f"detector {self.label} was called while its own ensemble set was made")
        if target is not None:
            self.making.setdefault("members", {}).setdefault(target, set()).add(self.label)
        return self.inner(x01)


@pytest.fixture(scope="module")
def guarded_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ens")
    cfg = load_matrix(str(write(tmp, THREE)))
    built = build(cfg, limit=8, device="cpu")
    making: dict = {}
    built.detectors = {label: Guarded(label, det, making) for label, det in built.detectors.items()}
    original = MatrixRun.generate

    def generate(self, source, attack, k):  # mark which ensemble set is being made
        making["for"] = left_out(source)
        try:
            original(self, source, attack, k)
        finally:
            making["for"] = None

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(MatrixRun, "generate", generate)
        run = MatrixRun(cfg, built, open_run(cfg, built, tmp / "out", 8), quiet=True)
        run.execute()
    return cfg, built, run, making


def test_the_set_for_a_target_is_made_by_every_other_detector_and_never_by_it(guarded_run):
    _, _, run, making = guarded_run  # a Guarded detector raised inside generation had it been a member
    assert making["members"] == {"checker": {"laplace", "cnn"}, "laplace": {"checker", "cnn"},
                                 "cnn": {"checker", "laplace"}}
    # the ensemble jobs are in the plan, so torchrun ranks share them
    names = [name for name, _ in run.plan()]
    assert "pgd on ensemble-for-cnn #1" in names and len(names) == 3 * (2 + 2) + (3 + 3) * 2 * 2  # clean + reals per target, then the sets
    assert run.seed_parts(ensemble_set("laplace"), "pgd") == ("ensemble", "pgd", "laplace")


def test_ensemble_rows_are_scored_by_their_own_target_only(guarded_run):
    _, built, run, _ = guarded_run
    records = run.store.records()
    ens = records[records.source == ENSEMBLE]
    assert ens.groupby(["attack", "target"]).size().to_dict() == {
        (a, t): 8 for a in ("fgsm", "pgd") for t in ("checker", "laplace", "cnn")}
    assert list(dict.fromkeys(records.source)) == ["checker", "laplace", "cnn", ENSEMBLE]
    for target in ("checker", "laplace", "cnn"):
        own, other = ensemble_set(target), ensemble_set("cnn" if target != "cnn" else "checker")
        scorer = built.detectors[target].inner
        rows = ens[(ens.attack == "pgd") & (ens.target == target)].sort_values("sample_index")
        for name, should_match in ((own, True), (other, False)):
            adv = torch.cat([dequantize(run.store.read_tensors(("adv", name, "pgd"), k)["adv"]) for k in (0, 1)])
            with torch.no_grad():
                p = scorer.p_fake(adv).double().numpy()
            assert (abs(rows["p_fake_adv"].to_numpy() - p).max() < 1e-6) == should_match, (target, name)
    # each ensemble set is scored by its own target alone: no wasted score shards for the others
    scored = {key[3] for key in run.computed if key[0] == "score" and key[1] == ensemble_set("laplace")}
    assert scored == {"laplace"}
    # quality is measured per ensemble set; the quality view pools them into one ensemble row
    assert ens["q_psnr"].notna().all()
    from bench.report import views

    assert (ENSEMBLE, "pgd") in views(run.store)["quality"].index


def test_ensemble_shards_resume_and_heal(guarded_run):
    cfg, built, run, _ = guarded_run
    again = MatrixRun(cfg, built, open_run(cfg, built, run.store.root.parent.parent, 8), quiet=True)
    assert again.store.root == run.store.root
    again.execute()
    assert again.computed == []
    before = run.store.read_tensors(("adv", ensemble_set("laplace"), "pgd"), 1)["adv"]
    run.store.shard_path(("adv", ensemble_set("laplace"), "pgd"), 1, "safetensors").unlink()
    run.store.shard_path(("score", ensemble_set("cnn"), "fgsm", "cnn"), 0, "parquet").write_bytes(b"damaged")
    run.store.records_path.unlink()
    healed = MatrixRun(cfg, built, open_run(cfg, built, run.store.root.parent.parent, 8), quiet=True)
    healed.execute()
    assert sorted(healed.computed) == [("adv", "ensemble-for-laplace", "pgd", "1"),
                                       ("score", "ensemble-for-cnn", "fgsm", "cnn", "0")]
    # the per-shard seed is the shard's own, so the recomputed set is the same set
    assert torch.equal(healed.store.read_tensors(("adv", ensemble_set("laplace"), "pgd"), 1)["adv"], before)
    # the records come back from the run folder and manifest alone
    pd.testing.assert_frame_equal(merge_records(RunStore.open(run.store.root)), healed.store.records())


def test_the_ensemble_is_part_of_the_run_identity(tmp_path):
    from bench.identity import identity_key, run_identity
    from bench.store import run_id_of

    on = load_matrix(str(write(tmp_path, THREE)))
    off = load_matrix(str(write(tmp_path, {k: v for k, v in THREE.items() if k != "ensemble"}, "off.yaml")))
    assert run_identity(on, 8)["ensemble"] == "leave-one-out"
    assert "ensemble" not in run_identity(off, 8)  # a matrix without the key keeps its run id
    assert run_id_of(identity_key(run_identity(on, 8))) != run_id_of(identity_key(run_identity(off, 8)))


def test_bench_run_with_the_ensemble_on_two_detectors(tmp_path):
    data = {**yaml.safe_load(TINY_MATRIX.read_text()), "ensemble": "leave-one-out"}
    data["attacks"] = {"fgsm": {"eps": 0.035}, "pgd": {"eps": 0.035, "step": 0.01, "steps": 2}}
    proc = run_cli("run", "--matrix", str(write(tmp_path, data)), "--out", str(tmp_path / "out"), "--limit", "4",
                   "--quiet")
    assert proc.returncode == 0, proc.stderr
    (root,) = (tmp_path / "out" / "tiny").iterdir()
    records = RunStore.open(root).records()
    table = pd.read_csv(root / "tables" / "asr_fgsm.csv", index_col=0)
    assert list(table.index) == ["checker", "laplace", ENSEMBLE]  # the ensemble row last
    # two detectors: the ensemble for one is the other, so deterministic FGSM makes the same set
    def fgsm_scores(source, target):
        rows = records[(records.source == source) & (records.attack == "fgsm") & (records.target == target)]
        return rows.sort_values("sample_index")["p_fake_adv"].tolist()

    for target, other in (("checker", "laplace"), ("laplace", "checker")):
        assert len(fgsm_scores(ENSEMBLE, target)) == 4
        assert fgsm_scores(ENSEMBLE, target) == fgsm_scores(other, target)
    board = pd.read_csv(root / "tables" / "leaderboard_linf_0.035.csv", index_col=0)
    off_diagonal = records[(records.source != records.target) & (records.attack == "pgd")]
    cells = off_diagonal.groupby(["source", "target"]).apply(
        lambda g: 100 * g.success.sum() / g.eligible.sum(), include_groups=False)
    assert len(cells) == 4  # the two single-source transfer cells and both ensemble cells
    assert board.loc["pgd", "transfer ASR"] == pytest.approx(cells.mean(), abs=0.05)


@pytest.mark.parametrize("change, expected", [
    ({"ensemble": "bogus"}, "key 'ensemble' must be one of leave-one-out"),
    ({"ensemble": "leave-one-out", "detectors": {"checker": {"detector": "checkerboard_energy"}}},
     "at least two detectors"),
    ({"ensemble": "leave-one-out", "detectors": {"ensemble": {"detector": "checkerboard_energy"},
                                                 "laplace": {"detector": "laplacian_energy"}}},
     "detectors.ensemble' must be renamed"),
])
def test_bad_ensemble_settings_are_one_error_line(tmp_path, change, expected):
    data = {**yaml.safe_load(TINY_MATRIX.read_text()), **change}
    proc = run_cli("run", "--matrix", str(write(tmp_path, data)), "--out", str(tmp_path / "out"), "--quiet")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.parquet"))


def test_the_eraser_walks_against_the_ensemble_without_calling_the_left_out_target():
    from bench.models.e4e import Encoder4Editing
    from bench.models.latent import LatentStack
    from bench.models.stylegan2 import Generator
    from bench.registry import create_attack
    from detectors.tiny import TinyCNN

    torch.manual_seed(0)
    g = Generator(32, style_dim=32, n_mlp=2, channel_max=16).eval()
    e = Encoder4Editing(n_styles=g.n_latent, input_size=32, style_dim=32, units=(1, 1, 1, 1),
                        widths=(8, 8, 16, 16)).eval()
    stack = LatentStack(e, g, g.mean_latent(200, torch.Generator().manual_seed(1)))
    a, b = TinyCNN(width=4, input_size=32, seed=1).eval(), TinyCNN(width=4, input_size=32, seed=2).eval()
    with torch.no_grad():  # sharpen the random heads so the walk has a gradient worth following
        a.head.weight.mul_(100)
        b.head.weight.mul_(100)
    ens = leave_one_out({"a": a, "t": Raises(), "b": b}, "t")
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    eraser = create_attack("eraser", stack=stack, step=0.05, steps=4, noise="const", inversion_check="paper")
    out = eraser(x, torch.ones(4), ens, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        p_inv, p_adv = ens.p_fake(out.info["inversion"]), ens.p_fake(out.adv01)
    assert (p_adv < p_inv - 0.05).all(), (p_inv, p_adv)  # about 0.15 -> 0.08
    assert out.info["p_fake_inversion_check"].shape == (4,)


class LatentStub(Attack):
    """A latent attack in shape only: an 'inversion' (the image darkened) and the official
    re-inversion grade of the white-box source, a constant that no detector would give."""

    is_latent = True
    CHECK = 0.123

    def __call__(self, x01, labels, detector, generator=None, reference=None):
        with torch.no_grad():
            detector(x01)  # it does see its surrogate
        return AttackOutput(x01 * 0.5, {"inversion": x01 * 0.8,
                                        "p_fake_inversion_check": torch.full((len(x01),), self.CHECK)})


def test_the_ensemble_row_grades_the_inversion_with_its_target(tmp_path):
    data = {**yaml.safe_load(TINY_MATRIX.read_text()), "ensemble": "leave-one-out", "attacks": {"fgsm": {}}}
    cfg = load_matrix(str(write(tmp_path, data)))
    built = build(cfg, limit=4, device="cpu")
    built.attacks = {"fgsm": LatentStub()}  # under a registered label, so the traits are stored
    run = MatrixRun(cfg, built, open_run(cfg, built, tmp_path / "out", 4), quiet=True)
    run.execute()
    records = run.store.records()
    white = records[records.source == records.target]
    assert white["p_fake_inversion"].to_numpy() == pytest.approx(LatentStub.CHECK)  # the white-box special case
    for target in ("checker", "laplace"):
        rows = records[(records.source == ENSEMBLE) & (records.target == target)].sort_values("sample_index")
        inversion = dequantize(run.store.read_tensors(("adv", ensemble_set(target), "fgsm"), 0)["inversion"])
        with torch.no_grad():
            expected = built.detectors[target].p_fake(inversion).double().numpy()
        assert abs(rows["p_fake_inversion"].to_numpy() - expected).max() < 1e-6
        assert (abs(rows["p_fake_inversion"] - LatentStub.CHECK) > 1e-3).all()
