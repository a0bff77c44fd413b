"""The reviewer baselines: transfer-enhanced difgsm / tifgsm / vmifgsm / sinifgsm, the query-based
square and the uniform_noise control. Effect on a trained detector, budgets, parity with
torchattacks called directly, RNG hygiene, Square's exact per-sample query count, and the
``info_queries`` record column through ``bench run``."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torchattacks
import yaml
from attack_helpers import FAKE_LABELS
from conftest import TINY_MATRIX, run_cli
from torch import nn

from attacks._common import TwoWayLogits, draw_seed
from bench.errors import UserError
from bench.registry import ATTACKS, create_attack


def run(attack, detector, x, seed=0, labels=FAKE_LABELS):
    return attack(x, labels, detector, torch.Generator().manual_seed(seed))


BUDGET = {"eps": 6 / 255, "step": 2 / 255, "steps": 10}
# tifgsm: a 3-px kernel; the default 15-px Gaussian smooths this detector's gradient away (below)
TRANSFER = {"difgsm": {}, "tifgsm": {"len_kernel": 3}, "vmifgsm": {}, "sinifgsm": {}}


@pytest.mark.parametrize("name", TRANSFER)
def test_transfer_attacks_lower_p_fake_within_budget(detector, fakes, name):
    clean = detector.p_fake(fakes)
    out = run(create_attack(name, **BUDGET, **TRANSFER[name]), detector, fakes)
    adv = detector.p_fake(out.adv01)
    assert clean.min() > 0.9 and torch.all(adv < clean - 0.2) and adv.mean() < 0.5
    linf = (out.adv01 - fakes).abs().flatten(1).amax(1)
    assert torch.all(linf <= BUDGET["eps"] + 1e-6) and torch.allclose(out.info["linf"], linf)
    assert out.adv01.min() >= 0 and out.adv01.max() <= 1
    assert create_attack(name, **BUDGET).budget() == {"norm": "linf", "eps": 6 / 255, "steps": 10}


def test_tifgsm_kernel_reaches_torchattacks(detector, fakes):
    # the test detector keys on a fine checkerboard: a wide Gaussian (torchattacks' default 15 px,
    # nsig 3) low-passes the gradient that removes it, a 3-px kernel keeps most of it
    wide = detector.p_fake(run(create_attack("tifgsm", **BUDGET), detector, fakes).adv01)
    narrow = detector.p_fake(run(create_attack("tifgsm", **BUDGET, len_kernel=3), detector, fakes).adv01)
    assert wide.min() > 0.95 and narrow.mean() < 0.5


def direct_transfer(name, model):
    small = {"eps": 4 / 255, "alpha": 1 / 255, "steps": 3}
    return {"difgsm": lambda: torchattacks.DIFGSM(model, **small),
            "tifgsm": lambda: torchattacks.TIFGSM(model, **small, len_kernel=3, decay=0.5),
            "vmifgsm": lambda: torchattacks.VMIFGSM(model, **small, N=2, beta=2.0),
            "sinifgsm": lambda: torchattacks.SINIFGSM(model, **small, m=2, decay=0.5)}[name]()


OURS_SMALL = {"difgsm": {}, "tifgsm": {"len_kernel": 3, "decay": 0.5}, "vmifgsm": {"samples": 2, "beta": 2.0},
              "sinifgsm": {"copies": 2, "decay": 0.5}}


@pytest.mark.parametrize("name", TRANSFER)
def test_transfer_attacks_match_torchattacks_called_directly(detector, fakes, name):
    seed = draw_seed(torch.Generator().manual_seed(5))  # what the harness seeds the global RNG with
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        direct = direct_transfer(name, TwoWayLogits(detector))(fakes, FAKE_LABELS)
    ours = create_attack(name, eps=4 / 255, step=1 / 255, steps=3, **OURS_SMALL[name])
    assert torch.equal(run(ours, detector, fakes, seed=5).adv01, direct)
    assert not detector.training


SEEDED = {"difgsm": {"steps": 2}, "tifgsm": {"steps": 2}, "vmifgsm": {"steps": 2, "samples": 2},
          "square": {"eps": 32 / 255, "queries": 120}, "uniform_noise": {}}


@pytest.mark.parametrize("name", SEEDED)
def test_randomness_follows_the_generator_and_spares_the_global_rng(detector, fakes, name):
    attack = create_attack(name, **SEEDED[name])
    before = torch.random.get_rng_state()
    a, b, c = (run(attack, detector, fakes, s).adv01 for s in (1, 1, 2))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sinifgsm_is_deterministic_without_a_generator(detector, fakes):
    attack = create_attack("sinifgsm", steps=2, copies=2)
    assert torch.equal(run(attack, detector, fakes, 1).adv01, attack(fakes, FAKE_LABELS, detector).adv01)


def test_presets_carry_the_pgd_budgets():
    for name in ("difgsm", "tifgsm", "vmifgsm", "sinifgsm"):
        assert ATTACKS.resolve_kwargs(name, {"preset": "paper-dfdc"}) == pytest.approx(
            {"eps": 0.05, "step": 0.0055, "steps": 8})
        official = ATTACKS.resolve_kwargs(name, {"preset": "official-ffpp"})
        assert official == pytest.approx({"eps": 12.5 / 255, "step": 2 / 255, "steps": 8})
    for name in ("square", "uniform_noise"):
        assert ATTACKS.get(name).presets["paper-celebdf"] == {"eps": 0.05}
        assert ATTACKS.get(name).presets["official-dfdc"] == pytest.approx({"eps": 12.5 / 255})
    assert create_attack("square", preset="paper-ffpp", queries=100).budget() == {
        "norm": "linf", "eps": 0.05, "steps": 97, "queries": 100}


# -- square ------------------------------------------------------------------------------------------
def test_square_lowers_p_fake_and_records_queries_within_budget(detector, fakes):
    attack = create_attack("square", eps=32 / 255, queries=300)
    out = run(attack, detector, fakes)
    clean, adv, queries = detector.p_fake(fakes), detector.p_fake(out.adv01), out.info["queries"]
    flipped = adv < 0.5
    assert flipped.sum() >= 6  # 7 of 8 on this detector
    assert queries.shape == (8,) and torch.all(queries <= 300) and torch.all(queries >= 4)
    assert torch.all(queries[flipped] < 300)  # a flipped sample stops querying
    # torchattacks returns the clean image for a sample its search did not flip, after the full budget
    assert torch.all(queries[~flipped] == 300)
    assert torch.equal(out.adv01[~flipped], fakes[~flipped]) and torch.all(adv[~flipped] == clean[~flipped])
    assert torch.all(out.info["linf"][flipped] <= 32 / 255 + 1e-6)


class QueryLedger(nn.Module):
    """A detector that tallies how often it saw each sample. Sample ``i`` carries the marker value
    ``i / (n - 1)`` in its first row of channel 0, which any L-inf perturbation below
    ``1 / (2 (n - 1))`` leaves closest to ``i / (n - 1)``."""

    def __init__(self, inner: nn.Module, n: int):
        super().__init__()
        self.inner, self.markers = inner, torch.linspace(0, 1, n)
        self.seen = torch.zeros(n, dtype=torch.long)

    def forward(self, x01):
        marker = x01[:, 0, 0, :].mean(1)
        self.seen += torch.bincount((marker[:, None] - self.markers).abs().argmin(1), minlength=len(self.markers))
        return self.inner(x01)


def test_square_counts_every_detector_evaluation_of_each_sample(detector, fakes):
    x = fakes[:4].clone()
    x[:, 0, 0, :] = torch.linspace(0, 1, 4)[:, None]  # markers 1/3 apart; eps 32/255 < 1/6
    labels = torch.tensor([1, 1, 0, 1])  # sample 2 is already "misclassified": one clean check
    ledger = QueryLedger(detector, 4)
    out = create_attack("square", eps=32 / 255, queries=150)(x, labels, ledger, torch.Generator().manual_seed(3))
    assert torch.equal(out.info["queries"].long(), ledger.seen)
    assert out.info["queries"][2] == 1 and torch.all(out.info["queries"] <= 150)
    assert len(set(out.info["queries"].tolist())) >= 3  # the test sees different counts


def test_square_matches_torchattacks_called_directly(detector, fakes):
    seed = draw_seed(torch.Generator().manual_seed(4))
    with torch.random.fork_rng():
        direct = torchattacks.Square(TwoWayLogits(detector), eps=32 / 255, n_queries=97, seed=seed)(fakes, FAKE_LABELS)
    out = run(create_attack("square", eps=32 / 255, queries=100), detector, fakes, seed=4)
    assert torch.equal(out.adv01, direct)


def test_square_bad_options_are_user_errors():
    with pytest.raises(UserError, match="queries must be > 3"):
        create_attack("square", queries=3)
    with pytest.raises(UserError):
        create_attack("square", loss="hinge")


# -- uniform_noise -----------------------------------------------------------------------------------
class NeverCalled(nn.Module):
    def forward(self, x):
        raise AssertionError("uniform_noise must not query the detector")


def test_uniform_noise_fills_its_budget_without_the_detector(fakes):
    eps = 6 / 255
    sign = run(create_attack("uniform_noise", eps=eps), NeverCalled(), fakes).adv01
    delta = sign - fakes
    inside = (fakes >= eps) & (fakes <= 1 - eps)  # pixels the [0,1] clamp cannot touch
    assert torch.allclose(delta[inside].abs(), torch.full_like(delta[inside], eps), atol=1e-6)
    assert 0.45 < (delta[inside] > 0).float().mean() < 0.55  # a fair coin
    uniform = run(create_attack("uniform_noise", eps=eps, distribution="uniform"), NeverCalled(), fakes).adv01
    spread = (uniform - fakes)[inside]
    assert spread.abs().max() <= eps + 1e-6 and spread.abs().mean() == pytest.approx(eps / 2, rel=0.05)
    assert torch.equal(uniform, run(create_attack("uniform_noise", eps=eps, distribution="uniform"),
                                    NeverCalled(), fakes).adv01)
    with pytest.raises(UserError):
        create_attack("uniform_noise", distribution="gaussian")


def test_uniform_noise_is_a_floor_far_below_pgd_at_the_same_budget(detector, fakes):
    clean = detector.p_fake(fakes)
    drop = {}
    for name, kwargs in [("uniform_noise", {}), ("pgd", {"step": 2 / 255, "steps": 5})]:
        adv = run(create_attack(name, eps=6 / 255, **kwargs), detector, fakes).adv01
        drop[name] = (clean - detector.p_fake(adv)).mean().item()
    assert drop["pgd"] > 0.8
    assert abs(drop["uniform_noise"]) < 0.05 * drop["pgd"]


# -- through `bench run` ----------------------------------------------------------------------------
def test_bench_run_records_square_queries_and_the_noise_row(tmp_path):
    data = yaml.safe_load(TINY_MATRIX.read_text())
    data["attacks"] = {"square": {"eps": 0.125, "queries": 40}, "uniform_noise": {"eps": 0.035},
                       "difgsm": {"eps": 0.035, "step": 0.01, "steps": 3}}
    data["sources"] = ["checker"]
    data["metrics"] = {"mode": "paper", "bootstrap": 50, "quality": []}
    matrix = tmp_path / "baselines.yaml"
    matrix.write_text(yaml.safe_dump(data))
    ran = run_cli("run", "--matrix", str(matrix), "--out", str(tmp_path / "r"), "--limit", "8", "--quiet")
    assert ran.returncode == 0, ran.stderr
    records = pd.read_parquet(next((tmp_path / "r").rglob("records.parquet")))
    square = records[records.attack == "square"]
    assert len(square) == 2 * 8 and square["budget_queries"].eq("40").all()
    assert square["info_queries"].between(1, 40).all()
    assert records[records.attack == "uniform_noise"]["budget_steps"].eq("0").all()
    assert "info_queries" in records and records[records.attack == "difgsm"]["info_queries"].isna().all()
