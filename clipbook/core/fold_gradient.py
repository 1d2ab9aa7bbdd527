"""A faster input gradient for convolutions with few input channels (CPU), for CLIP's fused step.

CLIP's fused step needs the input gradient of the network's FIRST layer (the pairs' ``grad_x L_i``), which
standard training never computes. For a convolution with one input channel (Fashion-MNIST's ``conv 32@5x5``)
PyTorch's CPU kernel for that gradient is slow: measured on one core, 39-44 ms for 192 images, about a quarter
of a whole standard training step. The same gradient is one matrix product and a fold (col2im)::

    grad_x = fold(W^T @ grad_y)     W: [c_out, c_in * k * k],  grad_y: [n, c_out, h_out * w_out]

which took 11 ms for the same 192 images. :class:`FoldGradConv2d` is an ``nn.Conv2d`` whose input gradient is
computed that way; its forward pass and its weight and bias gradients are PyTorch's own (bit for bit the same
as ``nn.Conv2d``'s, so standard training does not change at all). The input gradient agrees with PyTorch's to
float32 rounding, not bit for bit: a CLIP run with it follows a (slightly) different trajectory than one
without. That is why the reproduction of Table 1 does not use it (its stored runs were made without); it is
for your own training: ``fold_input_gradients(model)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _FoldGradConv(torch.autograd.Function):
    """``conv2d(x, w, b)`` (zero padding, ``groups = 1``) with the input gradient by ``fold(W^T @ grad_y)``."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation):
        ctx.save_for_backward(x, weight)
        ctx.conv = (stride, padding, dilation, bias is not None)
        return F.conv2d(x, weight, bias, stride, padding, dilation)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, has_bias = ctx.conv
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        if need_w or (need_b and has_bias):  # PyTorch's own kernel, asked for the parameter gradients only
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad_y, x, weight, [weight.shape[0]] if has_bias else None, stride, padding, dilation, False,
                [0, 0], 1, [False, need_w, need_b and has_bias])
        if need_x:
            n, c_out = grad_y.shape[:2]
            cols = torch.matmul(weight.reshape(c_out, -1).t(), grad_y.reshape(n, c_out, -1))  # [n, c_in*k*k, L]
            grad_x = F.fold(cols, x.shape[-2:], weight.shape[-2:], dilation=dilation, padding=padding, stride=stride)
        return grad_x, grad_w, grad_b, None, None, None


def _supported(conv: nn.Conv2d) -> bool:
    """Whether the fold gradient applies: ``groups = 1``, zero padding given as numbers."""
    return conv.groups == 1 and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


_UNSUPPORTED = "FoldGradConv2d needs groups=1, padding_mode='zeros' and numeric padding"


class FoldGradConv2d(nn.Conv2d):
    """``nn.Conv2d`` (zero padding, ``groups = 1``) whose input gradient is ``fold(W^T @ grad_y)``: same
    forward pass, same parameters and state dict, same weight and bias gradients; input ``[n, c_in, h, w]``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not _supported(self):
            raise ValueError(_UNSUPPORTED)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"FoldGradConv2d expects input [n, c, h, w], got shape {tuple(x.shape)}")
        return _FoldGradConv.apply(x, self.weight, self.bias, self.stride, self.padding, self.dilation)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "FoldGradConv2d":
        """The same layer (sharing ``conv``'s parameters) with the fold input gradient."""
        if not _supported(conv):
            raise ValueError(_UNSUPPORTED)
        new = cls.__new__(cls)
        new.__dict__.update(conv.__dict__)  # parameters, buffers, hooks and settings are shared, not copied
        return new


def fold_input_gradients(model: nn.Module, max_in_channels: int = 3) -> list[str]:
    """Replace, in place, every plain ``nn.Conv2d`` of ``model`` with at most ``max_in_channels`` input
    channels (zero padding, ``groups = 1``) by a :class:`FoldGradConv2d` that shares its parameters. Returns
    the names of the replaced layers. The model computes the same function with the same parameters; only
    the input gradient's kernel changes (worth it where CLIP needs it: the first layer on CPU)."""
    replaced = []
    for name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is nn.Conv2d and child.in_channels <= max_in_channels and _supported(child):
                setattr(parent, child_name, FoldGradConv2d.from_conv(child))
                replaced.append(f"{name}.{child_name}" if name else child_name)
    return replaced
