"""Every command-line flag with a bad value: one line naming the problem, exit status 2, no traceback."""
import subprocess
import sys

import pytest

from clipbook.repro.cli import main

TRAIN = ["train", "--dataset", "mnist", "--method", "clip", "--target", "0.9"]


@pytest.mark.parametrize("argv,needle", [
    (["train", "--dataset", "cifar", "--method", "clip"], "--dataset"),
    (["train", "--dataset", "mnist", "--method", "dropout"], "--method"),
    (["train", "--dataset", "mnist", "--method", "clip", "--target", "high"], "--target"),
    (["train", "--dataset", "mnist", "--method", "clip", "--target", "90"], "--target"),
    (TRAIN + ["--seed", "-1"], "--seed"), (TRAIN + ["--seed", "x"], "--seed"),
    (TRAIN + ["--epochs", "0"], "--epochs"), (TRAIN + ["--epochs", "ten"], "--epochs"),
    (TRAIN + ["--eval-size", "-5"], "--eval-size"), (TRAIN + ["--device", "tpu"], "--device"),
    (["reproduce", "--datasets", "svhn"], "--datasets"), (["reproduce", "--seeds", "a"], "--seeds"),
    (["regression", "--epochs", "-1"], "--epochs"), (["data", "--datasets", "cifar"], "--datasets"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_flags_are_one_line_errors(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


@pytest.mark.parametrize("setting,needle", [
    ("lam=abc", "lam must be a number"), ("lam=-1", "lam must be finite and >= 0"), ("epochs=1.5", "epochs"),
    ("lip_pairs=0", "lip_pairs"), ("optimizer=lbfgs", "optimizer"), ("nonsense=1", "unknown setting"),
    ("lam", "KEY=VALUE"), ("pair_refresh=never", "pair_refresh"), ("fused=maybe", "fused"),
])
def test_bad_settings_are_one_line_errors(setting, needle, capsys, tmp_path):
    assert main(TRAIN + ["--results", str(tmp_path), "--set", setting]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and needle in err and err.count("\n") == 1


def test_target_for_standard_training_is_refused(capsys, tmp_path):
    assert main(["train", "--dataset", "mnist", "--method", "standard", "--target", "0.9", "--results", str(tmp_path)]) == 2
    assert "no target" in capsys.readouterr().err


def test_unavailable_device_is_refused(capsys, tmp_path, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CLIPBOOK_DATA", str(tmp_path))
    assert main(TRAIN + ["--results", str(tmp_path), "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_help_does_not_import_torch():
    code = "import sys; from clipbook.repro.cli import parser; parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_clis_torch_free_choice_lists_match_the_package():
    from clipbook.repro import cli; from clipbook.core import data; from clipbook.core import device; from clipbook.core import training
    assert cli.DATASETS == data.DATASETS and cli.METHODS == training.METHODS and cli.DEVICES == device.DEVICES
