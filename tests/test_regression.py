"""Known answers for the Fig. 2 measures (oscillation in the gaps, distance to the truth), the setting
machinery of clipbook.regression, the resumable search and Fig. 1's pair rule."""
import json
import math

import numpy as np
import pytest
import torch

from clipbook import regression as R
from clipbook.data import regression_data, regression_target


def xs(n=801):
    return R.grid(n).squeeze(1)


def test_truth_has_no_oscillation_distance_zero_and_lipschitz_half():
    m = R.truth_metrics()
    assert m["tv"] == 0 and m["oscillation"] == 0 and m["max_slope"] == 0
    assert m["dist_rms"] == 0 and m["dist_boundary"] == 0
    assert m["lip"] == pytest.approx(0.5) and m["range"] == pytest.approx(0.5)


def test_constant_curve():
    m = R.gap_oscillation(xs(), torch.full((801,), 0.3))
    assert m == {"tv": 0.0, "oscillation": 0.0, "max_slope": 0.0}


def test_monotone_ramp_has_variation_but_no_oscillation():
    x = xs()
    m = R.gap_oscillation(x, 0.1 * x)  # slope 0.1: each gap of length 2.7 adds 0.27
    assert m["tv"] == pytest.approx(0.54, abs=1e-5)
    assert m["oscillation"] == pytest.approx(0.0, abs=1e-5)
    assert m["max_slope"] == pytest.approx(0.1, rel=1e-4)


def test_sine_on_the_gaps_known_total_variation():
    # sin(2 pi k (x - 0.3) / 2.7) on [0.3, 3]: k full periods, TV = 4 k, net change 0 -> oscillation 4 k
    x = torch.linspace(-4, 4, 8001, dtype=torch.float64)
    k = 3
    f = torch.where(x > 0, torch.sin(2 * math.pi * k * (x - 0.3) / 2.7), torch.zeros_like(x))
    m = R.gap_oscillation(x, f)
    assert m["tv"] == pytest.approx(4 * k, rel=1e-3)
    assert m["oscillation"] == pytest.approx(4 * k, rel=1e-3)
    assert m["max_slope"] == pytest.approx(2 * math.pi * k / 2.7, rel=1e-3)


def test_one_bump_counts_twice_its_height():
    x = xs()
    f = 0.2 * torch.exp(-((x + 1.5) / 0.2) ** 2)  # bump of height 0.2 inside the left gap
    m = R.gap_oscillation(x, f)
    assert m["oscillation"] == pytest.approx(0.4, abs=1e-3)


def test_gap_oscillation_rejects_bad_input():
    with pytest.raises(ValueError):
        R.gap_oscillation([0.0, 1.0], [0.0])
    with pytest.raises(ValueError):
        R.gap_oscillation(xs().flip(0), xs())


def test_distance_to_truth_known_values():
    x = xs()
    d = R.distance_to_truth(x, torch.zeros_like(x))
    # truth^2 = 0.25 (|x|-3)^2 on 1 < |x|-... : rms of 0.5 max(|x|-3,0) over [-4,4]
    expect = math.sqrt(np.mean(regression_target(x).numpy() ** 2))
    assert d["rms"] == pytest.approx(expect, rel=1e-6)
    assert d["boundary"] == pytest.approx(0.375, abs=2e-3)  # mean of 0.5 (|x| - 3) on |x| in [3.5, 4]
    assert R.distance_to_truth(x, regression_target(x) + 0.1)["rms"] == pytest.approx(0.1, rel=1e-5)


def _stage(lam, osc, rng, lip, rms, bnd):
    return {"lam": lam, "oscillation": osc, "range": rng, "lip": lip, "dist_rms": rms, "dist_boundary": bnd}


def test_assess_fig2_paper_like_and_constant_paths():
    paper = [_stage(0, 0.5, 0.6, 3, 0.1, 0.05), _stage(10, 0.0, 0.2, 0.1, 0.08, 0.2),
             _stage(1, 0.0, 0.4, 0.3, 0.04, 0.1), _stage(1e-10, 0.01, 0.5, 0.5, 0.02, 0.02)]
    assert R.assess_fig2(paper) == {"zero_oscillates": True, "ten_smooth_not_constant": True,
                                    "steady_approach": True, "no_instabilities": True, "reproduced": True}
    flat = [paper[0], _stage(10, 0, 0.0, 0, 0.14, 0.3), _stage(1, 0, 0.0, 0, 0.14, 0.3), paper[3]]
    a = R.assess_fig2(flat)
    assert not a["ten_smooth_not_constant"] and not a["steady_approach"] and not a["reproduced"]
    with pytest.raises(ValueError):
        R.assess_fig2(paper[::-1])


def test_scaled_task_multiplies_the_data_term():
    x, y = regression_data(seed=0)
    out = torch.zeros_like(y)
    assert R.ScaledRegressionTask(x, y, 100.0).loss(out, y).item() == pytest.approx(
        100 * R.ScaledRegressionTask(x, y).loss(out, y).item(), rel=1e-6)


def test_settings_reach_the_config_and_the_model():
    s = {"optimizer": "sgd", "lr": 0.1, "output_sigmoid": True}
    cfg = R.setting_config(s, 1.0, epochs=5)
    assert cfg.optimizer == "sgd" and cfg.lr == 0.1 and cfg.epochs == 5 and cfg.method == "clip"
    assert R.setting_config(s, 0.0).method == "standard"
    assert isinstance(R.build_regression_model(s)[-1], torch.nn.Sigmoid)
    assert not isinstance(R.build_regression_model({})[-1], torch.nn.Sigmoid)
    with pytest.raises(ValueError):
        R.setting_config({"no_such_setting": 1}, 1.0)


def test_stage_records_carry_the_metrics():
    path = R.warm_start_path([1.0], epochs=2, n_grid=81, setting={"epochs": 2})
    assert [s["lam"] for s in path["stages"]] == [0.0, 1.0]
    for s in path["stages"]:
        assert {"oscillation", "tv", "max_slope", "dist_rms", "dist_boundary", "range", "lip"} <= set(s)
        assert s["lip"] == pytest.approx(s["lip_grid"], rel=1e-4, abs=1e-6)
    assert path["setting"]["epochs"] == 2 and path["truth_metrics"]["oscillation"] == 0


def test_search_is_resumable(tmp_path, monkeypatch):
    from clipbook import fig2_search as S
    monkeypatch.setattr(S, "SEARCH", [("a", "test", {"epochs": 2}, ()), ("b", "test", {"epochs": 2}, (10.0, 1.0, 1e-10))])
    out = tmp_path / "s.json"
    S.run_search(out, only=["a"])
    assert [r["id"] for r in json.loads(out.read_text())["rows"]] == ["a"]
    table = S.run_search(out)
    assert [r["id"] for r in table["rows"]] == ["a", "b"]
    assert set(table["rows"][1]["assessment"]) >= {"zero_oscillates", "reproduced"}
    assert len(table["rows"][1]["stages"][0]["curve"]) == len(table["grid"])
    before = out.read_text()
    S.run_search(out)  # nothing left to do: unchanged
    assert out.read_text() == before


def test_fig1_pair_rule():
    from clipbook.fig1 import choose_pair
    ya, yb = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    tr = {"top_a": torch.tensor([[0, 1, 2], [3, 1, 5]]), "top_b": torch.tensor([[3, 4, 5], [0, 4, 2]]),
          "conf_a": torch.tensor([[1.0] * 3, [0.4, 0.9, 0.25]]), "conf_b": torch.tensor([[1.0] * 3, [0.3, 0.9, 0.2]]),
          "quotient": torch.tensor([[1.0] * 3, [5.0, 9.0, 2.0]])}
    k, reason = choose_pair(tr, ya, yb)
    assert k == 2 and "swapped" in reason  # both 0 and 2 swapped; 2 ends less confident
    tr["top_a"][1] = torch.tensor([0, 1, 7]); tr["top_b"][1] = torch.tensor([3, 4, 5])
    assert choose_pair(tr, ya, yb)[0] == 2  # only pair 2 left its class
    tr["top_a"][1] = torch.tensor([0, 1, 2])
    assert choose_pair(tr, ya, yb) == (1, "no image left its class; largest end quotient")


def test_path_slider_frames_have_both_panels_and_link_client_side():
    import ipywidgets as W
    from clipbook.widgets import KERNEL_NOTE, lambda_path_slider, retrain_panel_with_note
    path = R.warm_start_path([1.0], epochs=1, n_grid=41, setting={"epochs": 1})
    box = lambda_path_slider(path)
    slider, stack = box.children
    assert isinstance(stack, W.Stack) and len(stack.children) == 2
    assert all(bytes(img.value[:4]) == b"\x89PNG" for img in stack.children)
    assert box.link.source == (slider, "index") and box.link.target == (stack, "selected_index")
    panel = retrain_panel_with_note(path, epochs=1)
    note = panel.children[0]
    assert isinstance(note, W.HTML) and "Needs a running kernel" in note.value and KERNEL_NOTE in note.value
    panel.lam.value = 0.1
    panel.button.click()
    assert bytes(panel.image.value[:4]) == b"\x89PNG" and "Lipschitz estimate" in panel.status.value


def test_fig1_trajectory_figure_from_stored_shapes():
    from clipbook import plots
    n = 4
    traj = {k: [0.5] * n for k in ("pa_a", "pa_b", "pb_a", "pb_b", "conf_a", "conf_b")}
    traj.update(top_a=[0] * n, top_b=[6] * n)
    fig = plots.fig1_trajectory({"trajectory": traj, "class_a": 0, "class_b": 6},
                                {"steps": [0, 1, 3], "a": torch.rand(3, 1, 28, 28), "b": torch.rand(3, 1, 28, 28)})
    assert len(fig.axes) == 7
