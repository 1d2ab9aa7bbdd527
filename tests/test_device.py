"""Device handling: the device setting, and a smoke test on an accelerator (skipped where there is none)."""
import pytest
import torch

from clipbook.core.apgd import APGD
from clipbook.core.attacks import PaperPGD
from clipbook.core.data import toy_split
from clipbook.core.device import resolve_device
from clipbook.core.evaluation import attack_accuracy
from clipbook.core.models import build_model
from clipbook.core.tasks import ClassificationTask
from clipbook.core.training import TrainConfig, train


def _accelerator() -> str | None:
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return None


def test_auto_picks_an_available_device_and_bad_names_are_refused():
    assert resolve_device("auto").type == (_accelerator() or "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


def test_a_seed_gives_the_same_run_on_the_cpu_twice():
    runs = []
    for _ in range(2):
        cfg = TrainConfig(method="clip", target_acc=0.85, epochs=3, batch_size=32, lr=0.5, lip_pairs=16,
                          pair_refresh="rotate", eval_lip_steps=2)
        runs.append([(h["loss"], h["lam"]) for h in train(build_model("toy_mlp", 0), ClassificationTask(toy_split()), cfg).history])
    assert runs[0] == runs[1]


@pytest.mark.accelerator
@pytest.mark.skipif(_accelerator() is None, reason="no CUDA or MPS device here")
def test_clip_and_attacks_run_on_the_accelerator():
    dev = resolve_device(_accelerator())
    split = toy_split().to(dev)
    model = build_model("toy_mlp", 0).to(dev)
    cfg = TrainConfig(method="clip", target_acc=0.85, epochs=5, batch_size=32, lr=0.5, lip_pairs=16, pair_refresh="rotate")
    res = train(model, ClassificationTask(split), cfg)
    assert next(model.parameters()).device.type == dev.type and res.history[-1]["train_acc"] > 60
    x, y = split.x_test[:100], split.y_test[:100]
    acc_pgd = attack_accuracy(model, x, y, PaperPGD(eps=0.3, steps=10))
    acc_apgd = attack_accuracy(model, x, y, APGD(eps=0.3, steps=20))
    assert 0 <= acc_apgd <= acc_pgd + 0.05
