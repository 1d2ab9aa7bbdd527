import json
import os

import pytest
import torch

from clipbook.cli import main
from clipbook.io import write_json_atomic
from clipbook.runner import RunSpec, format_table1, is_done, load_results, run, table1, table1_specs

TINY = dict(epochs=1, lip_pairs=8, eval_lip_pairs=8, eval_lip_steps=2, val_pgd_steps=2)


@pytest.fixture
def env(tmp_path, monkeypatch, mnist_split):
    monkeypatch.setenv("CLIPBOOK_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_run_spec_validation():
    with pytest.raises(ValueError, match="needs a target"):
        RunSpec("mnist", "clip")
    with pytest.raises(ValueError, match="no target"):
        RunSpec("mnist", "standard", 0.9)
    with pytest.raises(ValueError, match="unknown dataset"):
        RunSpec("svhn", "standard")
    with pytest.raises(ValueError, match="unknown setting"):
        RunSpec("mnist", "clip", 0.9, overrides={"target_accuracy": 0.8})
    assert RunSpec("mnist", "clip", 0.9, seed=2).name == "mnist-clip90-s2"
    assert len(table1_specs(["mnist"], seeds=[0, 1])) == 14


def test_one_configuration_end_to_end_is_stored_atomically_and_skipped_when_done(env):
    spec = RunSpec("mnist", "clip", 0.9, overrides=TINY, eval_size=100)
    res = run(spec, env / "results", command="test")
    out = env / "results" / "mnist-clip90-s0.json"
    stored = json.loads(out.read_text())
    assert stored["metrics"] == res["metrics"]
    for k in ("train", "test", "noise", "pgd", "lam", "lip_estimate", "upper_bound", "best_epoch"):
        assert k in stored["metrics"]
    assert stored["metrics"]["lip_estimate"] <= stored["metrics"]["upper_bound"]
    assert stored["provenance"]["command"] == "test" and stored["provenance"]["torch"] == torch.__version__
    assert stored["n_pgd_test"] == 100 and len(stored["history"]) == 1
    art_path = env / "results" / "mnist-clip90-s0.artifacts.pt"
    assert art_path.stat().st_size < 200_000  # small tensors only, not views into the test set
    art = torch.load(art_path)
    assert art["x_adv"].shape == art["x"].shape and art["fig1_after"].shape == (2, 1, 28, 28)
    assert stored["curves"]["pgd_acc"] == sorted(stored["curves"]["pgd_acc"], reverse=True)
    assert (env / "cache" / "runs" / "mnist-clip90-s0.model.pt").exists()
    assert not list((env / "results").glob(".*tmp")) and not (env / "cache" / "runs" / "mnist-clip90-s0.state.pt").exists()
    assert is_done(spec, env / "results")
    mtime = os.path.getmtime(out)
    run(spec, env / "results")  # finished: skipped
    assert os.path.getmtime(out) == mtime
    assert not is_done(RunSpec("mnist", "clip", 0.9, overrides={**TINY, "epochs": 2}, eval_size=100), env / "results")

    # extras (curves, artifacts) can be rebuilt from the cached checkpoint
    from clipbook.runner import refresh_extras
    stored.pop("curves")
    write_json_atomic(out, stored)
    assert refresh_extras(env / "results") == ["mnist-clip90-s0"]
    assert "curves" in json.loads(out.read_text())

    rows = table1(load_results(env / "results"))
    assert rows[0]["row"] == "mnist-clip90" and rows[0]["paper"]["pgd"] == 36.2
    assert "mnist-clip90" in format_table1(rows)


def test_table_aggregates_seeds(tmp_path):
    for seed, pgd in ((0, 40.0), (1, 50.0)):
        write_json_atomic(tmp_path / f"mnist-clip90-s{seed}.json", {
            "row": "mnist-clip90", "seed": seed, "config": {"epochs": 3}, "n_pgd_test": 10,
            "metrics": {"train": 90, "test": 90, "noise": 50, "pgd": pgd, "lam_or_mu": 1.0}})
    (row,) = table1(load_results(tmp_path))
    assert row["pgd"] == 45.0 and row["pgd_std"] == pytest.approx(7.0710678)
    assert row["seeds"] == [0, 1]


def test_cli_train_and_table(env, capsys):
    args = ["--results", str(env / "r"), "--eval-size", "50"] + sum((["--set", f"{k}={v}"] for k, v in TINY.items()), [])
    assert main(["train", "--dataset", "mnist", "--method", "standard", *args]) == 0
    assert "mnist-standard-s0: train" in capsys.readouterr().out
    assert main(["table", "--results", str(env / "r")]) == 0
    assert "mnist-standard" in capsys.readouterr().out
    assert main(["train", "--dataset", "mnist", "--method", "clip", "--target", "1.5", *args]) == 2
    assert "target_acc" in capsys.readouterr().err


def test_cli_reports_missing_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLIPBOOK_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("CLIPBOOK_CACHE", str(tmp_path / "cache"))
    assert main(["train", "--dataset", "mnist", "--method", "standard", "--results", str(tmp_path / "r")]) == 2
    assert "CLIPBOOK_DATA" in capsys.readouterr().err
