"""FoldGradConv2d: the same layer as nn.Conv2d with the input gradient by fold(W^T @ grad_y)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clipbook.core.clip import CLIP
from clipbook.core.fold_gradient import FoldGradConv2d, fold_input_gradients
from clipbook.core.models import fashion_cnn


@pytest.mark.parametrize("conf", [dict(in_channels=1, out_channels=4, kernel_size=5, padding=2),
                                  dict(in_channels=2, out_channels=3, kernel_size=3, padding=1, stride=2),
                                  dict(in_channels=3, out_channels=2, kernel_size=(3, 2), dilation=2, bias=False)])
def test_gradients_match_conv2d(conf):
    torch.manual_seed(0)
    ref = nn.Conv2d(**conf).double()
    fold = FoldGradConv2d.from_conv(nn.Conv2d(**conf).double())
    fold.load_state_dict(ref.state_dict())
    x = torch.randn(3, conf["in_channels"], 9, 8, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(fold, (x,))
    xr = x.detach().clone().requires_grad_()
    g = torch.randn_like(ref(xr))
    ref(xr).backward(g)
    fold(x).backward(g)
    torch.testing.assert_close(x.grad, xr.grad)
    torch.testing.assert_close(fold.weight.grad, ref.weight.grad)


def test_forward_and_parameter_gradients_bit_for_bit():
    """Standard training (no input gradient) and CLIP's parameter gradients are unchanged to the bit."""
    torch.manual_seed(0)
    ref = nn.Conv2d(1, 32, 5, padding=2)
    fold = FoldGradConv2d(1, 32, 5, padding=2)
    fold.load_state_dict(ref.state_dict())
    for needs_input_grad in (False, True):
        ref.zero_grad(), fold.zero_grad()
        x = torch.rand(16, 1, 28, 28)
        xr, xf = x.clone().requires_grad_(needs_input_grad), x.clone().requires_grad_(needs_input_grad)
        yr, yf = ref(xr), fold(xf)
        assert torch.equal(yr, yf)
        g = torch.randn_like(yr)
        yr.backward(g), yf.backward(g)
        assert torch.equal(ref.weight.grad, fold.weight.grad) and torch.equal(ref.bias.grad, fold.bias.grad)
        if needs_input_grad:
            torch.testing.assert_close(xf.grad, xr.grad, rtol=1e-5, atol=1e-5)


def test_fold_input_gradients_replaces_in_place_and_keeps_the_function():
    torch.manual_seed(0)
    model = fashion_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(4, 1, 28, 28)
    out = model(x)
    assert fold_input_gradients(model) == ["0"]  # conv 1@5x5 only: the second conv has 32 input channels
    assert type(model[0]) is FoldGradConv2d and type(model[3]) is nn.Conv2d
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert torch.equal(model(x), out)
    assert fold_input_gradients(model) == []  # already replaced


def test_clip_step_with_fold_gradients_moves_pairs_like_the_native_one():
    x = torch.rand(12, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8) % 10
    moved = []
    for fold in (False, True):
        torch.manual_seed(0)
        model = fashion_cnn()
        if fold:
            fold_input_gradients(model)
        clip = CLIP(x[8:], lam=0.5)
        for _ in range(2):
            clip.loss(model, x[:8], y).backward()
            clip.update()
        moved.append(clip.pairs.x.clone())
    torch.testing.assert_close(moved[0], moved[1], rtol=1e-4, atol=1e-5)


def test_refuses_what_it_cannot_compute():
    with pytest.raises(ValueError, match="groups=1"):
        FoldGradConv2d(2, 2, 3, groups=2)
    with pytest.raises(ValueError, match=r"\[n, c, h, w\]"):
        FoldGradConv2d(1, 2, 3)(torch.rand(1, 5, 5))
