"""Storage of a model: float32 vs deployed (binarized weights packed at 1 bit), per layer and
in total, in bytes (the metrics panel) and in bits (the report), and the size of its file.

Counting rules: a binary (BWN or XNOR) weight is 1 bit plus one float32 alpha per output
channel or row; biases, float layers, BatchNorm parameters and floating buffers stay 32-bit
(the paper's "32x" counts weight bits only).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import torch
from torch import nn

from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import iter_binarizable
from xnorlab.measure.layers import layer_mode

FLOAT_BITS = 32
ALPHA_BYTES = 4  # one float32 alpha per output channel / row


@dataclass(frozen=True)
class LayerMemory:
    """Storage of one binarizable layer, float and as deployed in its current mode."""

    name: str
    mode: Mode
    float_bytes: int
    packed_bytes: int


@dataclass(frozen=True)
class MemoryReport:
    """Model storage, float vs packed (binarized layers at 1 bit per weight)."""

    layers: tuple[LayerMemory, ...]
    other_bytes: int  # parameters and buffers outside binarizable layers (BN, ...), as stored

    @property
    def float_bytes(self) -> int:
        return self.other_bytes + sum(layer.float_bytes for layer in self.layers)

    @property
    def packed_bytes(self) -> int:
        return self.other_bytes + sum(layer.packed_bytes for layer in self.layers)

    @property
    def ratio(self) -> float:
        """Compression ratio ``float_bytes / packed_bytes`` (1.0 when nothing is binarized)."""
        return self.float_bytes / self.packed_bytes if self.packed_bytes else 1.0


def packed_weight_bytes(weight_shape: tuple[int, ...]) -> int:
    """Bytes of a weight stored at one bit per element plus one float32 alpha per output.

    ``ceil(C_out * n / 8) + 4 * C_out`` with ``n = prod(weight_shape[1:])``.
    """
    out_channels = weight_shape[0]
    n_bits = math.prod(weight_shape)
    return math.ceil(n_bits / 8) + ALPHA_BYTES * out_channels


def layer_bits(weight_shape: tuple[int, ...], bias_elements: int, mode: Mode) -> tuple[int, int]:
    """``(float_bits, deployed_bits)`` of a layer's weight and bias.

    Float: ``32 * (n_weights + n_bias)``. Binary (BWN/XNOR): ``n_weights * 1 + 32 * C_out``
    (alpha) ``+ 32 * n_bias``.
    """
    n_weights = math.prod(weight_shape)
    float_bits = FLOAT_BITS * (n_weights + bias_elements)
    if mode is Mode.FLOAT:
        return float_bits, float_bits
    return float_bits, n_weights + FLOAT_BITS * (weight_shape[0] + bias_elements)


def other_parameter_elements(model: nn.Module, binarizable: list[nn.Module]) -> int:
    """Elements of floating parameters and buffers outside the binarizable layers."""
    inside = {id(t) for m in binarizable for t in (*m.parameters(False), *m.buffers(False))}
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() for t in tensors if id(t) not in inside and t.is_floating_point())


def _tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _layer_memory(name: str, module: nn.Conv2d | nn.Linear) -> LayerMemory:
    mode = layer_mode(module)
    weight_float = module.weight.numel() * FLOAT_BITS // 8
    bias = 0 if module.bias is None else _tensor_bytes(module.bias)
    weight_packed = (
        weight_float if mode is Mode.FLOAT else packed_weight_bytes(tuple(module.weight.shape))
    )
    return LayerMemory(name, mode, weight_float + bias, weight_packed + bias)


def model_memory(model: nn.Module) -> MemoryReport:
    """Storage of ``model`` as float32 and with its binarized layers packed, in bytes.

    Parameters and floating buffers outside the binarizable layers count as stored.
    """
    layers = [_layer_memory(name, module) for name, module in iter_binarizable(model)]
    counted = {
        id(p) for _, module in iter_binarizable(model) for p in module.parameters(recurse=False)
    }
    other = sum(_tensor_bytes(p) for p in model.parameters() if id(p) not in counted)
    other += sum(_tensor_bytes(b) for b in model.buffers() if b.is_floating_point())
    return MemoryReport(layers=tuple(layers), other_bytes=other)


def state_dict_file_bytes(model: nn.Module) -> int:
    """Size of ``torch.save(model.state_dict())``: the float file a user would ship."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()
