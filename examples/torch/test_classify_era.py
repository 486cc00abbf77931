"""Fast checks of examples/torch/classify_era.py: tiny data, one epoch."""

import json
import math
import os
import sys

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
pytest.importorskip("mnist1d")
pytest.importorskip("sklearn")
import classify_era as ce  # noqa: E402

TINY = {
    "mnist1d": dict(n_train=200, n_test=100, epochs=1, batch=50, lr=3e-3),
    "digits": dict(n_train=200, n_test=100, epochs=1, batch=50, lr=3e-3),
}


@pytest.fixture(scope="module")
def data():
    return {ds: ce.load_data(ds, TINY[ds]["n_train"], TINY[ds]["n_test"]) for ds in ce.DATASETS}


def entropies(logits):
    logp = F.log_softmax(logits.double(), dim=1)
    return -(logp.exp() * logp).sum(dim=1)


@pytest.mark.parametrize("dataset", ce.DATASETS)
@pytest.mark.parametrize("arm", tuple(ce.ARMS))
def test_arm_trains_and_floor_holds(dataset, arm, data):
    rec = ce.run(dataset, arm, 0, TINY[dataset], data=data[dataset], threads=1)
    assert rec["losses_finite"] and math.isfinite(rec["final_train_loss"])
    m = rec["metrics"]
    for k in ("accuracy", "nll", "ece", "entropy_mean", "entropy_min"):
        assert math.isfinite(m[k])
    assert 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["ece"] <= 1.0
    h0 = ce.ARMS[arm][0]
    if h0 is None:
        assert rec["head_s"] == 0.0
        return
    assert rec["head_s"] > 0.0
    # The floor on the test predictions (computed in eval mode by run's predict).
    assert m["entropy_min"] >= h0 - 1e-4


@pytest.mark.parametrize("arm", ["era", "era-h1"])
def test_floor_in_train_and_eval_mode(arm, data):
    torch.manual_seed(0)
    h0 = ce.ARMS[arm][0]
    model = ce.make_model("mnist1d", h0)
    x = data["mnist1d"][2]
    # Scale the last linear layer up so that the plain logits are very confident.
    with torch.no_grad():
        model[-2].weight.mul_(50.0)
    body = torch.nn.Sequential(*list(model)[:-1])
    with torch.no_grad():
        assert entropies(body(x)).min().item() < h0  # without the head the floor is broken
    for mode in ("train", "eval"):
        getattr(model, mode)()
        with torch.no_grad():
            h = entropies(model(x))
        assert h.min().item() >= h0 - 1e-4, mode
        # The head keeps the argmax of the plain logits (docs/math.md#softmax-forward: monotone).
        with torch.no_grad():
            assert torch.equal(model(x).argmax(1), body(x).argmax(1))


def test_ece_by_hand():
    probs = torch.tensor([[0.9, 0.1], [0.62, 0.38], [0.17, 0.83], [0.45, 0.55], [0.91, 0.09]], dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 1, 1])
    # bins of width 1/15: 0.9 and 0.91 share bin 13 (acc 1/2, conf 0.905); 0.62 (wrong) bin 9;
    # 0.83 (right) bin 12; 0.55 (right) bin 8.
    want = 2 / 5 * abs(0.5 - 0.905) + 1 / 5 * (0.62 + 0.17 + 0.45)
    assert ce.ece(probs, y) == pytest.approx(want, abs=1e-12)
    # Perfect confidence on right answers: zero.
    assert ce.ece(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])) == 0.0


def test_nll_and_accuracy_against_torch():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(64, 10, generator=g) * 3
    y = torch.randint(0, 10, (64,), generator=g)
    m = ce.metrics(logits, y)
    assert m["nll"] == pytest.approx(F.cross_entropy(logits.double(), y).item(), rel=1e-12)
    assert m["accuracy"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    h = entropies(logits)
    assert m["entropy_min"] == pytest.approx(h.min().item())
    assert m["entropy_mean"] == pytest.approx(h.mean().item())


def test_bootstrap_interval():
    mean, lo, hi = ce.bootstrap([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and 1.0 <= lo <= mean <= hi <= 4.0 and lo < hi
    assert ce.bootstrap([0.7]) == (0.7, 0.7, 0.7)


def test_compare_report_and_plot(tmp_path):
    plan = {"digits": dict(TINY["digits"], n_train=100, n_test=60)}
    paths = ce.compare(str(tmp_path), plan, seeds=(0, 1), datasets=("digits",), arms=("ce", "era"),
                       threads=1, verbose=False)
    assert len(paths) == 4 and all(os.path.exists(p) for p in paths)
    with open(paths[0]) as f:
        assert json.load(f)["threads"] == 1
    png = tmp_path / "plot.png"
    text = ce.report(str(tmp_path), str(png))
    assert "### digits" in text
    rows = [line for line in text.splitlines() if line.startswith("| ce ") or line.startswith("| era ")]
    assert len(rows) == 2 and all("| 2 |" in r for r in rows)
    assert png.stat().st_size > 0 and (tmp_path / "report.md").read_text() == text
    summary = ce.summarise(ce.load_runs(str(tmp_path)))
    era = summary["digits"]["era"]["entropy_min"]
    assert era[1] >= ce.ARMS["era"][0] - 1e-4
