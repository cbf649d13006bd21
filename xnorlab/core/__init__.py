"""Qt-free core: binarization math, layer wrappers, model surgery, data, models, training,
statistics and reports. Usable from scripts, notebooks and the CLI."""

from __future__ import annotations

from xnorlab.core.binarize import (
    binarize_weight,
    input_scale_kmap,
    input_scale_scalar,
    sign_nonzero,
    ste_sign,
    weight_scale_alpha,
    xnor_conv2d,
    xnor_linear,
)
from xnorlab.core.errors import XnorlabError
from xnorlab.core.layers import BinConv2d, BinLinear, LayerConfig
from xnorlab.core.modes import Backend, InputScaling, Mode, PadMode, WeightGrad
from xnorlab.core.surgery import (
    PRESETS,
    FirstLastBinarizedWarning,
    LayerInfo,
    ModeMapError,
    binarize_model,
    current_modes,
    float_mode,
    layer_macs,
    list_layers,
    preset_modes,
    restore_float,
)

__all__ = [
    "PRESETS",
    "Backend",
    "BinConv2d",
    "BinLinear",
    "FirstLastBinarizedWarning",
    "InputScaling",
    "LayerConfig",
    "LayerInfo",
    "Mode",
    "ModeMapError",
    "PadMode",
    "WeightGrad",
    "XnorlabError",
    "binarize_model",
    "binarize_weight",
    "current_modes",
    "float_mode",
    "input_scale_kmap",
    "input_scale_scalar",
    "layer_macs",
    "list_layers",
    "preset_modes",
    "restore_float",
    "sign_nonzero",
    "ste_sign",
    "weight_scale_alpha",
    "xnor_conv2d",
    "xnor_linear",
]
