"""A run scores every detector with its checkpoint source's p_fake rule (Artifact-Eraser's RECCE:
sigmoid of the fake logit alone), in the clean pass as in the attacked one."""

import math

import pandas as pd
import yaml
from conftest import ROOT, TINY_MATRIX, run_cli
from test_explain_run import entry_point_dir

SIGMOID_DETECTOR = '''
import torch

from bench.types import Detector


class SigmoidScored(Detector):
    """Logits [2, 0.5 + tiny]: softmax gives p_fake 0.18, the sigmoid rule 0.62."""

    p_fake_rule = "sigmoid"

    def __init__(self):
        super().__init__(input_size=32)

    def embed(self, xn):
        return xn.mean(dim=(1, 2, 3)).unsqueeze(1)

    def classify(self, xn):
        m = self.embed(xn)[:, 0]
        return torch.stack([0.0 * m + 2.0, 0.5 + 0.001 * m], dim=1)


def sigmoid_scored(checkpoint=None, trust_checkpoint=False):
    return SigmoidScored().eval()
'''


def test_the_runner_scores_with_the_detectors_p_fake_rule(tmp_path):
    """Regression: the runner's contract check scored with softmax whatever the source's rule."""
    plugin = entry_point_dir(tmp_path / "plugin", "sigmoid-plugin", "sigmoid_scored", "sigmoid_detector:sigmoid_scored")
    (plugin / "sigmoid_detector.py").write_text(SIGMOID_DETECTOR)
    data = yaml.safe_load(TINY_MATRIX.read_text())
    data["detectors"] = {"sig": {"detector": "sigmoid_scored"}}
    data["attacks"] = {"fgsm": {"eps": 0.035}}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    ran = run_cli("run", "--matrix", str(path), "--limit", "2", "--out", str(tmp_path / "r"), "--quiet",
                  env={"PYTHONPATH": f"{plugin}:{ROOT}"}, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    clean = pd.read_parquet(next((tmp_path / "r").rglob("shards/clean/sig/*.parquet")))
    scored = pd.read_parquet(next((tmp_path / "r").rglob("shards/score/sig/fgsm/sig/*.parquet")))
    expected = 1 / (1 + math.exp(-0.5))  # sigmoid(0.5) = 0.6225; softmax would give 0.1824
    assert len(clean) >= 2 and all(abs(p - expected) < 2e-3 for p in clean["p_fake"])
    assert all(abs(p - expected) < 2e-3 for p in scored["p_fake_adv"])


def test_the_official_pixel_walk_descends_the_detectors_own_p_fake():
    """Regression: MSE(p_fake, 0) was taken on softmax for every detector. Here the two rules pull
    the image in opposite directions: softmax p_fake = sigmoid(-m) falls as the mean m rises, the
    sigmoid rule's p_fake = sigmoid(2m) falls as it drops."""
    import torch

    from attacks._official_pixel import OfficialSignWalk

    plugin: dict = {}
    exec(SIGMOID_DETECTOR, plugin)  # the plugin's detector (sigmoid rule, embed = mean), other logits

    class Opposed(plugin["SigmoidScored"]):
        def classify(self, xn):
            m = self.embed(xn)[:, 0]
            return torch.stack([3 * m, 2 * m], dim=1)

    x = torch.full((2, 3, 32, 32), 0.5)
    out = OfficialSignWalk(step=0.01, steps=3)(x, torch.ones(2, dtype=torch.long), Opposed().eval())
    assert torch.allclose(out.adv01, torch.full_like(x, 0.47), atol=1e-6)  # three steps of 0.01 down
