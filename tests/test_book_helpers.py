"""The functions behind the book's widgets and figures."""
import matplotlib

matplotlib.use("Agg")

import ipywidgets as W
import pytest
import torch

from clipbook.book import plots
from clipbook.repro.regression import PATH_LAMBDAS, fit_single, nearest_stage, warm_start_path
from clipbook.book.widgets import lambda_path_slider, png_switcher, retrain_panel_with_note


@pytest.fixture(scope="module")
def tiny_path():
    return warm_start_path([1.0, 1e-3], epochs=3, pretrain_epochs=3, n_grid=41)


def test_warm_start_path_records_every_stage(tiny_path):
    assert [s["lam"] for s in tiny_path["stages"]] == [0.0, 1.0, 1e-3]
    for s in tiny_path["stages"]:
        assert len(s["curve"]) == 41 and s["lip_grid"] <= s["upper_bound"]
    assert PATH_LAMBDAS == tuple(sorted(PATH_LAMBDAS, reverse=True))  # decreasing: warm starts towards 0


def test_nearest_stage_on_a_log_scale(tiny_path):
    assert nearest_stage(tiny_path, 0.5)["lam"] == 1.0
    assert nearest_stage(tiny_path, 1e-4)["lam"] == 1e-3
    assert nearest_stage(tiny_path, 0)["lam"] == 0.0


def test_slider_links_one_panel_per_stage_client_side(tiny_path):
    box = lambda_path_slider(tiny_path)
    slider, stack = box.children
    assert isinstance(stack, W.Stack) and len(stack.children) == 3
    assert all(bytes(img.value[:4]) == b"\x89PNG" for img in stack.children)
    assert [lab for lab, _ in slider.options] == ["0", "1e-03", "1e+00"]  # increasing lambda
    # the browser moves the panel through this link, without a kernel
    assert box.link.source == (slider, "index") and box.link.target == (stack, "selected_index")


def test_png_switcher_refuses_mismatched_panels():
    with pytest.raises(ValueError, match="one label per panel"):
        png_switcher(["a", "b"], [b"x"])
    with pytest.raises(ValueError, match="kind"):
        png_switcher(["a"], [b"x"], kind="knob")


def test_retrain_button_trains_and_shows_a_panel(tiny_path, monkeypatch):
    import clipbook.book.widgets as cw
    monkeypatch.setattr(cw, "fit_single", lambda lam, epochs, n_grid: fit_single(lam, epochs=2, n_grid=n_grid))
    panel = retrain_panel_with_note(tiny_path, epochs=2)
    note, controls, image = panel.children
    assert "Needs a running kernel" in note.value  # visible in the static HTML too
    lam, button, status = controls.children
    lam.value = 0.1
    button.click()
    assert bytes(image.value[:4]) == b"\x89PNG" and "Lipschitz estimate" in status.value


def test_figures_build_from_stored_shapes(tiny_path):
    assert plots.fig2(tiny_path).axes and plots.lambda_path_plot(tiny_path).axes
    art = {"x": torch.rand(3, 1, 28, 28), "x_adv": torch.rand(3, 1, 28, 28), "y": torch.tensor([0, 1, 2]),
           "p_clean": torch.softmax(torch.randn(3, 10), 1), "p_adv": torch.softmax(torch.randn(3, 10), 1)}
    assert len(plots.adversarial_examples(art, "fashion", n=3).axes) == 6


def test_styled_formats_every_float_column_once():
    """Chapter 7's tables: a second Styler.format call used to reset every other column to pandas' default."""
    import re

    import numpy as np
    import pandas as pd

    from clipbook.book.robustness_figures import styled
    df = pd.DataFrame({"acc": np.array([76.279998, 0.0], dtype=np.float32), "ratio": [1.23456, None],
                       "n": [3, 4], "ok": [True, False]}, index=["a", "b"])
    cells = re.findall(r">([^<>]*)</td>", styled(df, 1, {"ratio": "{:.3f}"}).to_html())
    assert cells == ["76.3", "1.235", "3", "True", "0.0", "–", "4", "False"]
    with pytest.raises(KeyError, match="does not have"):
        styled(df, 1, {"nope": "{:.1f}"})
    idx = pd.DataFrame({"v": [1.0]}, index=pd.Index([1e-10], name="λ"))
    assert "0.000000" not in styled(idx, 2, {"v": "{:.1f}"}).format_index("{:.0e}").to_html()


def test_roadmap_reads_the_toc_and_draws_every_chapter():
    from pathlib import Path

    from clipbook.book.roadmap import STAGES, chapters, roadmap_figure
    root = Path(__file__).resolve().parent.parent
    chs = chapters(root)
    assert [n for n, _ in chs] == sorted(STAGES)
    assert all(title and not title.startswith("#") for _, title in chs)
    fig = roadmap_figure(chs)
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {f"Chapter {n}" for n in range(2, 8)} <= texts
    assert {"theory", "algorithm", "experiments", "beyond"} <= texts


def test_status_says_what_is_stored_and_what_is_not():
    from clipbook.book.status import status_markdown
    t = {"paper_rows": 7, "rows_stored": 7, "runs": 21, "seeds": {}, "seeds_min": 3, "seeds_max": 3,
         "seed_ids": [0, 1, 2], "epochs": [100], "devices": ["cpu (1 threads)"], "hours": 1.26, "other_runs": 0,
         "other_rows": []}
    none = {**t, "rows_stored": 0, "runs": 0, "seeds_min": 0, "seeds_max": 0, "seed_ids": [], "epochs": []}
    fig2 = {"statements": {"zero_oscillates": False, "steady_approach": True}, "n": 2, "hold": 1,
            "failing": ["the unregularised network (λ = 0) oscillates in the gaps of the data"], "reproduced": False}
    text = status_markdown({"table1": {"mnist": t, "fashion": none}, "fashion_epochs": 20, "fig2": fig2})
    lines = text.splitlines()
    assert len(lines) == 3 and all(line.startswith("* ") for line in lines)
    assert "7 of the paper's 7 rows stored, 3 seeds each (seeds 0, 1, 2), 100 epochs per run" in lines[0]
    assert "one CPU thread" in lines[0] and "1.3 hours" in lines[0]
    assert "no run stored yet" in lines[1] and "E = 20 epochs" in lines[1]
    assert "1 of the 2 statements" in lines[2] and "not reproduced" in lines[2]
    half = {**t, "rows_stored": 5, "seeds": {"clip85": [], "clip90": [0]}}
    assert "Not yet stored: clip85." in status_markdown({"table1": {"mnist": half}, "fig2": None})


def test_status_reads_the_stored_results():
    from pathlib import Path

    from clipbook.book.status import book_status
    results = Path(__file__).resolve().parent.parent / "results"
    if not any(results.glob("mnist-*.json")):
        pytest.skip("no stored results")
    s = book_status(results)
    m = s["table1"]["mnist"]
    assert m["paper_rows"] == 7 and 0 < m["rows_stored"] <= 7 and m["runs"] >= m["rows_stored"]
    assert all(isinstance(e, int) for e in m["epochs"])


def test_fig2_status_reads_the_seed_study(tmp_path):
    import json
    from clipbook.book.status import fig2_status, status_markdown
    assert fig2_status(tmp_path) is None
    (tmp_path / "regression").mkdir()
    st = {"a": {"text": "statement a", "verdict": "holds"}, "b": {"text": "statement b", "verdict": "fails"},
          "c": {"text": "statement c", "verdict": "undecided"}}
    (tmp_path / "regression" / "fig2_seeds.json").write_text(json.dumps(
        {"summary": {"statements": st, "n": 10, "n_not_stuck": 8}}))
    f2 = fig2_status(tmp_path)
    assert f2["hold"] == 1 and f2["n"] == 3 and not f2["reproduced"]
    line = status_markdown({"table1": {}, "fig2": f2})
    assert "1 of the 3 statements" in line and "8 of 10 seeds" in line
    assert "fails: statement b" in line and "undecided: statement c" in line
