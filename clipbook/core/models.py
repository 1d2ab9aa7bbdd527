"""The paper's networks. Classification models return logits (no output sigmoid)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

MODELS = ("mnist_mlp", "fashion_cnn", "regression_mlp", "toy_mlp")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``with eval_mode(model):`` runs ``model`` in evaluation mode and afterwards restores every submodule's
    own training flag (also those a caller had set differently from the parent's)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


@contextmanager
def batchnorm_statistics_from(model: nn.Module, n: int, update_running: bool = True) -> Iterator[nn.Module]:
    """``with batchnorm_statistics_from(model, n):`` every BatchNorm layer of ``model`` in training mode
    normalises its whole input ``[N, C, ...]`` with the statistics of the first ``n`` rows alone (and updates
    its running statistics from them alone, unless ``update_running`` is false): further rows, e.g. CLIP's
    pairs, pass through the layer that the minibatch defines without changing it. Other layers are untouched."""
    patched = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            patched.append((m, m.__dict__.get("forward")))
            m.forward = _first_rows_batchnorm(m, n, update_running)
    try:
        yield model
    finally:
        for m, old in patched:
            del m.forward
            if old is not None:
                m.forward = old


def _first_rows_batchnorm(m: nn.modules.batchnorm._BatchNorm, n: int, update_running: bool):
    def forward(inp: torch.Tensor) -> torch.Tensor:
        head = inp[:n]
        if update_running:
            out = type(m).forward(m, head)
        else:
            out = nn.functional.batch_norm(head, None, None, m.weight, m.bias, True, 0.0, m.eps)
        if len(inp) == n:
            return out
        dims = [0, *range(2, inp.ndim)]
        shape = (1, -1) + (1,) * (inp.ndim - 2)
        mean, var = head.mean(dims).view(shape), head.var(dims, unbiased=False).view(shape)
        tail = (inp[n:] - mean) * torch.rsqrt(var + m.eps)
        if m.affine:
            tail = tail * m.weight.view(shape) + m.bias.view(shape)
        return torch.cat([out, tail])
    return forward


class Network(nn.Sequential):
    """``nn.Sequential`` that knows one sample's input shape (``input_shape``), which the bounds of
    :mod:`clipbook.core.bounds` need for convolutions. The state dict is that of the plain ``nn.Sequential``."""

    def __init__(self, *layers: nn.Module, input_shape: tuple[int, ...]):
        super().__init__(*layers)
        self.input_shape = tuple(input_shape)


def mnist_mlp(hidden: int = 64) -> Network:
    """MNIST: 784-64-64-10 with sigmoid activations (Sec. 4.2). Input ``[N, 1, 28, 28]``, logits ``[N, 10]``."""
    return Network(
        nn.Flatten(),
        nn.Linear(784, hidden), nn.Sigmoid(),
        nn.Linear(hidden, hidden), nn.Sigmoid(),
        nn.Linear(hidden, 10), input_shape=(1, 28, 28))


def fashion_cnn() -> Network:
    """Fashion-MNIST: the "simple CNN" of Madry et al. (2018).

    conv 32@5x5 (same padding), ReLU, max-pool 2, conv 64@5x5, ReLU, max-pool 2, fc 1024, ReLU, fc 10.
    Input ``[N, 1, 28, 28]``, logits ``[N, 10]``.
    """
    return Network(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 1024), nn.ReLU(),
        nn.Linear(1024, 10), input_shape=(1, 28, 28))


def regression_mlp(widths: tuple[int, ...] = (500, 200, 100), output_sigmoid: bool = False) -> Network:
    """Regression (Sec. 4.1): 1-500-200-100-1 with sigmoid activations. Input ``[N, 1]``, output ``[N, 1]``.

    The paper's network ends in a (non-negative) sigmoid, which is why its fits cannot follow the
    negative noisy samples; ``output_sigmoid=False`` gives a linear last layer instead.
    """
    layers: list[nn.Module] = []
    prev = 1
    for w in widths:
        layers += [nn.Linear(prev, w), nn.Sigmoid()]
        prev = w
    layers.append(nn.Linear(prev, 1))
    if output_sigmoid:
        layers.append(nn.Sigmoid())
    return Network(*layers, input_shape=(1,))


def toy_mlp(hidden: int = 32) -> Network:
    """A 2-32-32-2 sigmoid MLP for the book's two-dimensional illustrations. Input ``[N, 2]``, logits ``[N, 2]``."""
    return Network(nn.Linear(2, hidden), nn.Sigmoid(), nn.Linear(hidden, hidden), nn.Sigmoid(),
                   nn.Linear(hidden, 2), input_shape=(2,))


def build_model(name: str, seed: int | None = None) -> Network:
    """Build one of :data:`MODELS`, initialised from ``seed`` when given (``torch.manual_seed``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {MODELS}")
    if seed is not None:
        torch.manual_seed(seed)
    return {"mnist_mlp": mnist_mlp, "fashion_cnn": fashion_cnn, "regression_mlp": regression_mlp,
            "toy_mlp": toy_mlp}[name]()


def abs_network() -> Network:
    """|x| = ReLU(x) + ReLU(-x) as a 1-2-1 ReLU net: each layer has norm sqrt(2), so the product bound
    (4) is 2 while the true Lipschitz constant is 1 (the paper's introductory example)."""
    net = Network(nn.Linear(1, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False), input_shape=(1,))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        net[2].weight.copy_(torch.tensor([[1.0, 1.0]]))
    return net


class _Scale(nn.Module):
    """Parametrization ``W -> scale * W`` with the scale a buffer (saved in the state dict)."""

    def __init__(self, scale: float):
        super().__init__()
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.scale * w


def apply_spectral_norm(model: nn.Module, scale: float = 1.0) -> nn.Module:
    """Spectral normalisation of every Linear/Conv2d layer (``torch.nn.utils.parametrizations.spectral_norm``),
    then multiplied by ``scale``: each layer's weight has (estimated) spectral norm ``scale``. For convolutions
    PyTorch normalises the reshaped kernel, not the convolution operator, so the operator norm can differ."""
    from torch.nn.utils import parametrize
    from torch.nn.utils.parametrizations import spectral_norm
    for m in list(model.modules()):
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            spectral_norm(m)
            parametrize.register_parametrization(m, "weight", _Scale(scale))
    return model


def is_spectrally_normalised(model: nn.Module) -> bool:
    """True when :func:`apply_spectral_norm` prepared ``model``."""
    return any(isinstance(m, _Scale) for m in model.modules())


def set_spectral_scale(model: nn.Module, scale: float) -> None:
    """Set the scale of every layer prepared by :func:`apply_spectral_norm`."""
    for m in model.modules():
        if isinstance(m, _Scale):
            m.scale.fill_(scale)
