"""The layer-wise product bound (4): an upper bound on Lip(f) from the layers' own Lipschitz constants.

``Lip(f) <= prod_l Lip(layer_l)`` for a network that is a chain of layers ``f = layer_L o ... o layer_1``
(nested ``nn.Sequential``); any other network is refused, never bounded by a product that may be too small. Every factor here is an upper bound itself,
so certificates built on the product are sound:

- linear layers: the exact spectral norm (SVD in float64);
- convolutions: the exact spectral norm of the *circular* convolution on a grid large enough that no
  wrap-around reaches the image (Sedghi, Gupta & Long 2019): the zero-padded (and any strided) convolution
  is a sub-matrix of it, so its norm can only be smaller. :func:`conv2d_operator_norm` gives the power
  iteration estimate from below for comparison;
- activations and pooling: their known constants.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: Lipschitz constants of the elementwise activations (Euclidean norm).
ACTIVATION_LIPSCHITZ: dict[type, float] = {
    nn.Sigmoid: 0.25, nn.ReLU: 1.0, nn.Tanh: 1.0, nn.LeakyReLU: 1.0, nn.ELU: 1.0, nn.Identity: 1.0,
    nn.Flatten: 1.0, nn.Dropout: 1.0,
}


def linear_operator_norm(apply, adjoint, shape: tuple[int, ...], iters: int = 100, seed: int = 0) -> float:
    """Largest singular value of a linear operator by power iteration on ``adjoint(apply(v))``.

    ``apply`` maps ``[1, *shape]`` tensors. The estimate approaches the norm from BELOW: a lower bound.
    """
    g = torch.Generator().manual_seed(seed)
    v = torch.randn((1, *shape), generator=g)
    v = v / v.norm()
    with torch.no_grad():
        for _ in range(iters):
            w = adjoint(apply(v))
            v = w / w.norm().clamp_min(1e-30)
        return apply(v).norm().item()


def conv2d_operator_norm(conv: nn.Conv2d, input_shape: tuple[int, int, int], iters: int = 100) -> float:
    """Power-iteration estimate (from below) of the spectral norm of ``conv``'s linear part on inputs of
    shape ``input_shape`` (C, H, W), padding and stride included (``conv2d`` and its exact adjoint)."""
    w = conv.weight.detach().cpu()
    c, h, wd = input_shape

    def apply(v):
        return F.conv2d(v, w, None, conv.stride, conv.padding, conv.dilation, conv.groups)

    natural = F.conv_transpose2d(apply(torch.zeros(1, c, h, wd)), w, None, conv.stride, conv.padding, 0,
                                 conv.groups, conv.dilation).shape[-2:]
    # output_padding restores the input rows/columns a strided convolution reads but the natural transpose
    # size leaves out, making ``adjoint`` the exact adjoint of ``apply``
    out_pad = (h - natural[0], wd - natural[1])

    def adjoint(u):
        return F.conv_transpose2d(u, w, None, conv.stride, conv.padding, out_pad, conv.groups, conv.dilation)

    return linear_operator_norm(apply, adjoint, (c, h, wd), iters)


def conv2d_norm_upper_bound(conv: nn.Conv2d, input_shape: tuple[int, int, int]) -> float:
    """An upper bound on the spectral norm of ``conv`` (any padding, stride 1 or more, groups = 1): the
    exact norm of the circular convolution on an ``N x N`` grid, ``N = H + dilated kernel size``, i.e. the
    largest singular value over all frequencies ``(u, v)`` of the ``[C_out, C_in]`` matrix ``K_hat(u, v)``."""
    if conv.groups != 1:
        raise ValueError("conv2d_norm_upper_bound supports groups = 1 only")
    w = conv.weight.detach().double().cpu()
    kh = conv.dilation[0] * (w.shape[2] - 1) + 1
    kw = conv.dilation[1] * (w.shape[3] - 1) + 1
    n_h, n_w = input_shape[1] + kh, input_shape[2] + kw
    dilated = torch.zeros(w.shape[0], w.shape[1], kh, kw, dtype=w.dtype)
    dilated[:, :, ::conv.dilation[0], ::conv.dilation[1]] = w
    k_hat = torch.fft.fft2(dilated, s=(n_h, n_w))            # [C_out, C_in, N_h, N_w]
    per_freq = k_hat.permute(2, 3, 0, 1).reshape(-1, w.shape[0], w.shape[1])
    return torch.linalg.matrix_norm(per_freq, ord=2).max().item()


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's layers: leaf modules, where a parametrized layer (e.g. spectral norm) counts as a leaf
    and the parametrization modules inside it are skipped."""
    return [(n, m) for n, m in model.named_modules()
            if "parametrizations" not in n.split(".")
            and all(c == "parametrizations" for c, _ in m.named_children())]


def _is_chain(m: nn.Module) -> bool:
    """``m`` runs its children one after the other: an ``nn.Sequential`` whose ``forward`` is not overridden."""
    return isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward


def chain_layers(model: nn.Module, prefix: str = "", _seen: set[int] | None = None) -> list[tuple[str, nn.Module]]:
    """The layers of ``model`` in the order its forward applies them, for a plain chain: nested
    ``nn.Sequential`` containers of leaf layers, each module used once, no forward hooks. Anything else (a
    module with its own ``forward``: a residual block, a skip connection, a custom model; a layer used twice;
    a hook that changes outputs) raises ``ValueError``: the product bound (4) holds for a composition of
    layers only, and a product over registration order can be *below* the true constant."""
    seen = set() if _seen is None else _seen
    where = prefix or "the model"
    if id(model) in seen:
        raise ValueError(f"the product bound needs each layer once, but {where} ({type(model).__name__}) is used "
                         f"twice in the chain: bound it another way, e.g. a lower bound from clipbook.core.lipschitz")
    seen.add(id(model))
    if model._forward_hooks or model._forward_pre_hooks:
        raise ValueError(f"the product bound cannot see through the forward hooks of {where} "
                         f"({type(model).__name__}): remove them, or bound the network another way")
    children = [(n, m) for n, m in model._modules.items() if n != "parametrizations" and m is not None]
    if not children:
        return [(prefix, model)]
    if not _is_chain(model):
        raise ValueError(f"the product bound needs a plain chain of layers (nested nn.Sequential), but "
                         f"{where} ({type(model).__name__}) has its own forward (a residual or "
                         f"custom block?): bound it another way, e.g. a lower bound from clipbook.core.lipschitz")
    out = []
    for n, m in children:
        out += chain_layers(m, f"{prefix}.{n}" if prefix else n, seen)
    return out


def infer_input_shape(model: nn.Module) -> tuple[int, ...]:
    """One sample's input shape where the first layer determines it (``Linear``: ``(in_features,)``);
    otherwise ``model.input_shape`` as :func:`clipbook.core.models.build_model` sets it."""
    shape = getattr(model, "input_shape", None)
    if shape is not None:
        return tuple(shape)
    for _, m in _layers(model):
        if isinstance(m, nn.Linear):
            return (m.in_features,)
        if isinstance(m, (nn.Flatten, nn.Identity, nn.Dropout)) or type(m) in ACTIVATION_LIPSCHITZ:
            continue
        break
    raise ValueError("the input shape is not determined by the first layer (a convolution?): "
                     "pass input_shape=(C, H, W)")


def layer_lipschitz_constants(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> list[tuple[str, float]]:
    """``(layer name, upper bound on its Lipschitz constant)`` for each layer of a feed-forward model, a plain
    chain of known layers (:func:`chain_layers`; anything else raises ``ValueError``)."""
    layers = chain_layers(model)
    input_shape = tuple(input_shape) if input_shape is not None else infer_input_shape(model)
    shapes: dict[nn.Module, tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out: shapes.__setitem__(mod, tuple(inp[0].shape[1:])))
             for _, m in layers]
    try:
        with torch.no_grad():
            p = next(model.parameters(), None)
            model(torch.zeros((1, *input_shape), device=p.device if p is not None else None))
    finally:
        for h in hooks:
            h.remove()
    consts = []
    for name, m in layers:
        if m not in shapes:
            continue
        if isinstance(m, nn.Linear):
            c = torch.linalg.matrix_norm(m.weight.detach().double().cpu(), ord=2).item()
        elif isinstance(m, nn.Conv2d):
            c = conv2d_norm_upper_bound(m, shapes[m])
        elif isinstance(m, nn.MaxPool2d):
            k, s = m.kernel_size, m.stride
            k = (k, k) if isinstance(k, int) else k
            s = (s, s) if isinstance(s, int) else s
            c = math.sqrt(math.ceil(k[0] / s[0]) * math.ceil(k[1] / s[1])) if s[0] < k[0] or s[1] < k[1] else 1.0
        elif type(m) in ACTIVATION_LIPSCHITZ:
            c = ACTIVATION_LIPSCHITZ[type(m)]
        else:
            raise ValueError(f"layerwise_upper_bound: no Lipschitz constant known for layer {name!r} ({type(m).__name__})")
        consts.append((name, float(c)))
    return consts


def layerwise_upper_bound(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> float:
    """The product bound (4): the product of the layers' Lipschitz bounds (:func:`layer_lipschitz_constants`)."""
    return float(math.prod(c for _, c in layer_lipschitz_constants(model, input_shape)))
