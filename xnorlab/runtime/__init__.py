"""Where a wrapped layer is sent to the native engine: the one place that knows both the
layer classes (``xnorlab.binary``) and the engine facade (``xnorlab.engine``)."""

from __future__ import annotations

from xnorlab.runtime.deploy import DeployReport, deploy
from xnorlab.runtime.fused import FusedXnorConv, fold_batchnorm
from xnorlab.runtime.integration import (
    native_backend,
    native_layer_forward,
    packed_weight,
    set_backend,
)

__all__ = [
    "DeployReport",
    "FusedXnorConv",
    "deploy",
    "fold_batchnorm",
    "native_backend",
    "native_layer_forward",
    "packed_weight",
    "set_backend",
]
