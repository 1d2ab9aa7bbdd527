"""clipbook.repro.certificates on a tiny model and split (seconds): known invariants of LipSDP, certificates and radii,
and the resumable store."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("cvxpy")
pytest.importorskip("foolbox")

from clipbook.repro.certificates import (beyond_record, lipsdp_lmi_size, main, plain_mlp, priority, round_down,  # noqa: E402
                             round_up)
from clipbook.core.bounds import layerwise_upper_bound  # noqa: E402
from clipbook.core.models import Network, apply_spectral_norm, build_model, fashion_cnn  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    """A 16-12-12-3 sigmoid MLP on 4x4 'images' in [0, 1] (3 classes, one bright quadrant each), trained to
    classify most of them with a margin; 120 test images."""
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    y = torch.randint(3, (360,), generator=g)
    x = 0.25 * torch.rand(360, 1, 4, 4, generator=g)
    for k, (r, c) in enumerate(((0, 0), (0, 2), (2, 0))):
        x[y == k, :, r:r + 2, c:c + 2] += 0.6
    x = x.clamp(0, 1)
    torch.manual_seed(0)
    net = Network(nn.Flatten(), nn.Linear(16, 12), nn.Sigmoid(), nn.Linear(12, 12), nn.Sigmoid(), nn.Linear(12, 3),
                  input_shape=(1, 4, 4))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(net(x[:240]), y[:240]).backward()
        opt.step()
    return net.eval(), x[240:], y[240:]


def test_invariants_on_a_tiny_model(tiny):
    net, x, y = tiny
    product = layerwise_upper_bound(net)
    rec = beyond_record(net, x, y, product, n=60, steps=30, fresh_process=False)
    b = rec["bounds"]
    assert rec["lipsdp"]["verified"] and rec["lipsdp"]["lmi_size"] == 16 + 24
    # LipSDP is never above the product bound (the product is a feasible point of the SDP)
    assert 0 < b["lipsdp"] <= product * (1 + 1e-6)
    assert b["best"] == min(b["lipsdp"], b["product"])
    # a smaller bound certifies at least as much, at every radius; radius 0 is the clean accuracy
    acc_p, acc_l = rec["certified_acc"]["product"], rec["certified_acc"]["lipsdp"]
    assert all(l >= p for p, l in zip(acc_p, acc_l))
    clean = 100 * (net(x).argmax(1) == y).float().mean().item()
    assert acc_p[0] == pytest.approx(clean) and acc_l[0] == pytest.approx(clean)
    assert clean > 80
    # the certified radius is a lower bound, the empirical radius an upper bound on the true one
    s = rec["summary"]
    assert s["n"] == 60 and s["n_violations"] == 0 and s["n_certified"] > 40
    assert s["min_ratio"] >= 1 and s["median_ratio"] >= 1
    cert, emp = rec["radii"]["certified"], rec["radii"]["empirical"]
    assert len(cert) == len(emp) == 60
    assert all(e is None or e >= c for c, e in zip(cert, emp))
    json.dumps(rec, allow_nan=False)  # JSON-safe


def test_plain_mlp_is_the_same_function():
    net = apply_spectral_norm(build_model("mnist_mlp", seed=0), scale=2.0)
    for _ in range(3):
        net.train(); net(torch.rand(4, 1, 28, 28))
    net.eval()
    x = torch.rand(7, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(plain_mlp(net)(x), net(x), atol=1e-6)


def test_priority_puts_every_row_of_seed_0_first():
    names = [("mnist-clip90", 1), ("mnist-jacobian85", 0), ("mnist-standard", 0), ("mnist-clip90", 0)]
    rs = sorted(({"row": r, "seed": s} for r, s in names), key=priority)
    assert [(r["row"], r["seed"]) for r in rs] == [("mnist-standard", 0), ("mnist-clip90", 0),
                                                   ("mnist-jacobian85", 0), ("mnist-clip90", 1)]


def test_conservative_rounding():
    v = torch.tensor([0.123456789, 1.0, 2.000001])
    assert round_down(v) == [0.12345, 1.0, 2.0]
    assert round_up(torch.tensor([0.123451, 1.0, math.inf])) == [0.12346, 1.0, None]


def test_the_cnn_lmi_is_out_of_reach():
    size = lipsdp_lmi_size(fashion_cnn())
    assert size["lmi_size"] == 784 + 32 * 28 * 28 + 64 * 14 * 14 + 1024 == 39440
    assert size["dense_float64_gb"] == pytest.approx(12.44, abs=0.01)


def test_cli_is_resumable(tiny, tmp_path, monkeypatch):
    """The command on a results folder with one stored MNIST result: computes it once, then skips it."""
    import clipbook.repro.certificates as beyond
    import clipbook.repro.runner as runner
    net, x, y = tiny
    (tmp_path / "checkpoints").mkdir()
    torch.save(net.state_dict(), tmp_path / "checkpoints" / "mnist-tiny-s0.pt")
    result = {"name": "mnist-tiny-s0", "row": "mnist-tiny", "dataset": "mnist", "method": "standard",
              "target": None, "seed": 0, "config": {}, "budget": {}, "history": [], "provenance": {},
              "metrics": {k: 0.0 for k in ("train", "test", "noise", "noise_normalised", "noise_normalised_clipped",
                                           "pgd", "lam", "mu", "sn_scale", "lip_estimate", "upper_bound",
                                           "best_epoch")},
              "beyond": {"bounds": {"pair_search": 1.0, "jacobian": 1.0, "lower": 1.0,
                                    "upper": layerwise_upper_bound(net)}}}
    (tmp_path / "mnist-tiny-s0.json").write_text(json.dumps(result))

    class Split:
        x_test, y_test = x, y
    monkeypatch.setattr(runner, "load_split", lambda ds: Split)
    monkeypatch.setattr(runner, "load_checkpoint", lambda r, d: net)
    calls = []
    real = beyond.beyond_record
    monkeypatch.setattr(beyond, "beyond_record", lambda *a, **k: calls.append(1) or real(*a, **{**k, "steps": 20}))
    assert main(["--results", str(tmp_path), "--n", "30"]) == 0
    stored = json.loads((tmp_path / "beyond.json").read_text())
    assert list(stored) == ["mnist-tiny-s0"] and stored["mnist-tiny-s0"]["summary"]["n"] == 30
    assert stored["mnist-tiny-s0"]["provenance"]["command"].startswith("python -m clipbook.repro.certificates")
    assert stored["mnist-tiny-s0"]["lipsdp"]["fresh_process"]  # the SDP ran in a spawned process
    assert main(["--results", str(tmp_path), "--n", "30"]) == 0 and len(calls) == 1
    assert main(["--results", str(tmp_path), "--n", "30", "--force"]) == 0 and len(calls) == 2
