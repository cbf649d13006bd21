"""The bit-packed XNOR engine: native C++ kernels (AVX-512 / AVX2 / scalar) with a pure-PyTorch
reference (``xnorlab.engine.reference``) of identical semantics.

Functions take a float input and return a float output; ``weight`` is a float tensor (packed on
the fly) or a packed object from :func:`pack_conv2d_weight` / :func:`pack_linear_weight` (packed
once, the fast path). Semantics are those of ``xnorlab.binary.binarize``:

* ``sign(x) = +1`` for ``x >= 0`` (also for ``-0.0``), ``-1`` otherwise; NaN -> +1 with a
  ``NaNInputWarning`` (like the core); the K map / beta of a NaN input is NaN, as in the core.
* ``xnor_conv2d``: ``(pad(sign(x)) (*) sign(W)) * alpha * S + bias``, ``alpha = mean |W|`` per
  filter, ``S`` = K map (``kmap``), ``mean |x_n|`` (``scalar``) or 1 (``none``); ``zero``
  padding adds 0, ``one`` padding +1. With ``scaling="none"`` and ``alpha = 1`` the result equals
  ``F.conv2d(sign(x), sign(W), ...)`` exactly.
* ``groups > 1`` runs in the reference (the engine packs channels of one group per word row;
  grouped layers are small and rare in the nets we target).
* Conv outputs are returned in ``channels_last`` memory format (the engine writes NHWC, which
  the next layer's packing reads directly); values and shape are the usual NCHW ones.
* Inputs of any float dtype are computed in float32 and returned in the input's dtype.
* Inference only: outputs carry no autograd graph (train with ``xnorlab.binary.binarize``).

Around the conv: a :class:`Prologue` (``clamp(x * scale + shift)`` per input channel, applied
while packing) and an :class:`Epilogue` (``clamp(out + residual)``, applied per output tile);
:class:`PreparedConv2d` validates a conv once per input shape and can hand the next conv its
packed input (:class:`PackedActivation`); a :class:`ConvChain` runs several prepared convs
(a network's residual blocks) as one call; :func:`max_pool2d` pools channels_last input.

Engine controls: :func:`info`, :func:`set_isa`, :func:`set_threads`, :func:`get_threads`,
:func:`set_thread_pool` (:class:`ThreadPool`: torch's OpenMP team or the engine's own pool),
``XNORLAB_KERNEL=reference``, ``XNORLAB_ISA``, ``XNORLAB_THREADS``, ``XNORLAB_THREAD_POOL``,
``XNORLAB_ADAPTIVE_THREADS=0``
(a :class:`ConvChain` then always uses the pool's threads); timing with :func:`profile`;
the micro-kernel's own rate (the bare popcount loop) with :func:`microkernel_rate`.
"""

from __future__ import annotations

from xnorlab.engine import reference
from xnorlab.engine._backend import (
    ThreadPool,
    get_thread_pool,
    get_threads,
    info,
    microkernel_rate,
    set_isa,
    set_thread_pool,
    set_threads,
)
from xnorlab.engine.chain import ChainStep, ConvChain, ThreadChooser
from xnorlab.engine.conv import xnor_conv2d
from xnorlab.engine.errors import KernelConfigError, KernelInputError, KernelTypeError
from xnorlab.engine.fused import Epilogue, Prologue
from xnorlab.engine.linear import bwn_linear, xnor_linear
from xnorlab.engine.packed import (
    PackedConv2dWeight,
    PackedLinearWeight,
    pack_conv2d_weight,
    pack_linear_weight,
)
from xnorlab.engine.pool import max_pool2d
from xnorlab.engine.prepared import PackedActivation, PreparedConv2d
from xnorlab.engine.profiling import KernelTiming, profile

__all__ = [
    "ChainStep",
    "ConvChain",
    "Epilogue",
    "KernelConfigError",
    "KernelInputError",
    "KernelTiming",
    "KernelTypeError",
    "PackedActivation",
    "PackedConv2dWeight",
    "PackedLinearWeight",
    "PreparedConv2d",
    "Prologue",
    "ThreadChooser",
    "ThreadPool",
    "bwn_linear",
    "get_thread_pool",
    "get_threads",
    "info",
    "max_pool2d",
    "microkernel_rate",
    "pack_conv2d_weight",
    "pack_linear_weight",
    "profile",
    "reference",
    "set_isa",
    "set_thread_pool",
    "set_threads",
    "xnor_conv2d",
    "xnor_linear",
]
