"""One configuration end to end, with evaluation budgets small enough for seconds."""
import json
import os

import pytest
import torch

from clipbook.repro.cli import main
from clipbook.repro.experiments import DATASET_DEFAULTS, EvalBudget, RunSpec, table1_specs
from clipbook.core.files import write_json_atomic
from clipbook.repro.reporting import format_table1, table1
from clipbook.repro.runner import is_done, refresh_evaluation, run
from clipbook.repro.storage import checkpoint_path, load_results, state_path

TINY = dict(epochs=1, lip_pairs=8, eval_lip_pairs=8, eval_lip_steps=2)
BUDGET = EvalBudget(pgd=50, strong=20, attack_steps=5, curves=20, curve_steps=3, bound_pairs=10, bound_steps=3,
                    jacobian=10)


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
    assert RunSpec("mnist", "adversarial", overrides={"adv_eps": 0.5}).name == "mnist-adversarial-e0.5-s0"
    assert len(table1_specs(["mnist"], seeds=[0, 1])) == 14


def test_one_configuration_end_to_end_is_stored_atomically_and_skipped_when_done(env):
    spec = RunSpec("mnist", "clip", 0.9, overrides=TINY, budget=BUDGET)
    res = run(spec, env / "results", command="test", device="cpu")
    assert spec.name.startswith("mnist-clip90-s0-") and "epochs1" in spec.name  # the overrides are in the name
    out = env / "results" / f"{spec.name}.json"
    stored = json.loads(out.read_text())
    assert stored["metrics"] == res["metrics"]
    m = stored["metrics"]
    assert m["lip_estimate"] <= m["upper_bound"] and 0 <= m["pgd"] <= 100
    assert m["noise_normalised"] >= m["noise"] - 5  # sigma 0.31 in pixels is milder than sigma 1
    rob = stored["robust"]
    assert rob["n"] == 20 and set(rob["attacks"]) == {"pgd-sign", "pgd-l2", "apgd-ce", "apgd-t"}
    for i in range(len(rob["eps"])):  # the worst case is at most every single attack
        assert rob["worst"][i] <= min(a[i] for a in rob["attacks"].values()) + 1e-9
        assert rob["worst_independent"][i] == rob["worst_cascade_subset"][i] == rob["worst"][i]
        assert [st["attack"] for st in rob["cascade"][i]] == ["clean", "pgd-sign", "apgd-ce", "pgd-l2", "apgd-t"]
    # the final network is kept and evaluated beside the selected one
    fin = stored["final"]
    assert fin["epoch"] == 1 and fin["same_as_selected"] and fin["metrics"]["test"] == m["test"]
    assert (env / "results" / "checkpoints" / f"{spec.name}.final.pt").exists()
    assert stored["provenance"]["command"] == "test" and stored["provenance"]["device"].startswith("cpu")
    assert len(stored["history"]) == 1 and stored["budget"]["pgd"] == 50
    art = torch.load(env / "results" / f"{spec.name}.artifacts.pt")
    assert set(art) == {"x", "y", "x_adv", "x_strong", "p_clean", "p_adv", "p_strong"}
    assert art["x_adv"].shape == art["x"].shape == art["x_strong"].shape
    assert checkpoint_path(env / "results", spec.name).exists()
    assert not list((env / "results").glob(".*tmp")) and not state_path(env / "results", spec.name).exists()
    assert is_done(spec, env / "results")
    mtime = os.path.getmtime(out)
    run(spec, env / "results")  # finished: skipped
    assert os.path.getmtime(out) == mtime
    assert not is_done(RunSpec("mnist", "clip", 0.9, overrides={**TINY, "epochs": 2}, budget=BUDGET), env / "results")
    # the evaluation can be rebuilt from the stored checkpoint
    stored.pop("robust")
    write_json_atomic(out, stored)
    assert refresh_evaluation(env / "results", device="cpu") == [spec.name]
    assert json.loads(out.read_text())["robust"]["worst"] == rob["worst"]
    rows = table1(load_results(env / "results"))
    assert not (env / "results" / "mnist-clip90-s0.json").exists()
    assert rows[0]["row"] == "mnist-clip90" and rows[0]["paper"]["pgd"] == 36.2
    assert "mnist-clip90" in format_table1(rows)


def test_a_readers_run_leaves_the_books_results_untouched(env, monkeypatch, capsys):
    book = env / "book-results"
    book.mkdir()
    (book / "keep.txt").write_text("the book's")
    monkeypatch.chdir(env)
    monkeypatch.delenv("CLIPBOOK_RESULTS", raising=False)
    args = sum((["--set", f"{k}={v}"] for k, v in TINY.items()), [])
    monkeypatch.setattr("clipbook.repro.experiments.BUDGETS", {"mnist": BUDGET, "fashion": BUDGET})
    monkeypatch.setattr("clipbook.repro.experiments.DATASET_DEFAULTS", {"mnist": {**DATASET_DEFAULTS["mnist"], **TINY}})
    assert main(["train", "--dataset", "mnist", "--method", "standard", "--device", "cpu", *args]) == 0
    assert "mnist-standard-s0: train" in capsys.readouterr().out
    assert (env / "clipbook-results" / "mnist-standard-s0.json").exists()  # the reader's default folder
    assert sorted(p.name for p in book.iterdir()) == ["keep.txt"]
    assert main(["table", "--results", str(env / "clipbook-results")]) == 0
    assert "mnist-standard" in capsys.readouterr().out


def test_cli_reports_missing_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLIPBOOK_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("CLIPBOOK_CACHE", str(tmp_path / "cache"))
    assert main(["train", "--dataset", "mnist", "--method", "standard", "--results", str(tmp_path / "r")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "CLIPBOOK_DATA" in err[0] and "python -m clipbook data" in err[0]


def test_no_override_can_write_under_another_runs_name(env, capsys):
    """The settings that name a run have their own flags; every other override and budget joins the name."""
    for key, value in (("method", "weight_reg"), ("seed", 3), ("target_acc", 0.5)):
        with pytest.raises(ValueError, match="name"):
            RunSpec("mnist", "clip", 0.9, overrides={key: value})
        assert main(["train", "--dataset", "mnist", "--method", "clip", "--target", "0.9", "--set", f"{key}={value}",
                     "--results", str(env / "r")]) == 2
        assert "--seed" in capsys.readouterr().err
    names = {RunSpec("mnist", "clip", 0.9).name, RunSpec("mnist", "clip", 0.9, overrides={"lr": 0.5}).name,
             RunSpec("mnist", "clip", 0.9, overrides={"epochs": 5}).name,
             RunSpec("mnist", "clip", 0.9, budget=EvalBudget(pgd=100)).name,
             RunSpec("mnist", "weight_reg", 0.9).name, RunSpec("mnist", "clip", 0.9, seed=1).name}
    assert len(names) == 6 and "mnist-clip90-s0" in names and "mnist-clip90-s0-lr0.5" in names
    assert RunSpec("mnist", "clip", 0.9, overrides={"lr": 0.1}).name == "mnist-clip90-s0"  # the default itself
    assert RunSpec("mnist", "adversarial", overrides={"adv_eps": 0.5}).name == "mnist-adversarial-e0.5-s0"


def test_a_name_that_holds_another_configuration_is_not_overwritten(env):
    spec = RunSpec("mnist", "standard", overrides=TINY, budget=BUDGET)
    p = env / "results" / f"{spec.name}.json"
    p.parent.mkdir()
    write_json_atomic(p, {"config": {**spec.config().to_dict(), "lr": 0.3}, "budget": spec.budget_dict()})
    with pytest.raises(ValueError, match="another configuration"):
        run(spec, env / "results", device="cpu")
    assert json.loads(p.read_text())["config"]["lr"] == 0.3


def test_workers_sharing_a_queue_claim_each_run_once(tmp_path):
    from clipbook.repro.storage import claim
    lock = claim(tmp_path, "mnist-standard-s0")
    assert lock is not None and lock.read_text() == str(os.getpid())
    assert claim(tmp_path, "mnist-standard-s0") is None  # held by a live process (this one)
    lock.write_text("999999999")  # a process that is gone
    assert claim(tmp_path, "mnist-standard-s0") is not None


def test_git_commit_is_dirty_with_changed_or_new_code_anywhere_results_come_from(tmp_path):
    import subprocess
    from clipbook.repro.provenance import git_commit
    run = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)
    run("init", "-q"); (tmp_path / "clipbook").mkdir(); (tmp_path / "clipbook" / "a.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("not code\n")
    run("add", "clipbook"); run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    assert not git_commit(tmp_path).endswith("-dirty")  # an untracked file outside the code does not count
    (tmp_path / "benchmarks").mkdir(); (tmp_path / "benchmarks" / "b.py").write_text("y = 2\n")
    assert git_commit(tmp_path).endswith("-dirty")      # a new, untracked benchmark does


def test_provenance_names_the_cpu_and_the_vector_instructions_torch_uses(monkeypatch):
    import torch
    from clipbook.repro import provenance as P
    cpu = P.provenance()["cpu"]
    assert cpu.endswith(", " + torch.backends.cpu.get_cpu_capability())  # AVX2 and AVX-512 sum differently
    monkeypatch.setattr(P.Path, "read_text", lambda self: "processor\t: 0\nmodel name\t: Test CPU 9000\n")
    assert P.cpu_description().startswith("Test CPU 9000, ")
