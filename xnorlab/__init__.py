"""xnorlab: a desktop lab for binary neural networks (XNOR-Net, BWN).

The public API: binarization math, the layer wrappers and model surgery, and ``show`` (the lab
on a live model). Everything else lives in rooms named by domain (``xnorlab.engine``,
``xnorlab.models``, ``xnorlab.measure``, ...).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

# torch's OpenMP workers spin long after every parallel region by default and starve the
# engine's thread pool on the other core; sleeping at once makes each small torch op wake them.
# A short spin keeps both fast (benchmarks/RESULTS.md). libgomp reads this once, when torch
# loads, so it is set before any import below loads torch; a policy the user set wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "10000"

from xnorlab._version import __version__
from xnorlab.binary.binarize import (
    binarize_weight,
    input_scale_kmap,
    input_scale_scalar,
    sign_nonzero,
    ste_sign,
    weight_scale_alpha,
    xnor_conv2d,
    xnor_linear,
)
from xnorlab.binary.layers import BinConv2d, BinLinear, LayerConfig
from xnorlab.binary.modes import Backend, InputScaling, Mode, PadMode, WeightGrad
from xnorlab.binary.surgery import (
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
    unbinarizable_layers,
)
from xnorlab.common.errors import XnorlabError
from xnorlab.runtime.deploy import deploy
from xnorlab.runtime.integration import native_backend, set_backend


def show(
    model: Any,
    data: Any = None,
    *,
    class_names: Sequence[str] | None = None,
    example_input: Any = None,
    inplace: bool = False,
    block: bool = True,
) -> Any:
    """Open the lab on a live ``nn.Module``; returns the main window (a ``QMainWindow``).

    ``data``: a torch ``Dataset``, a ``DataLoader`` or an ``(X, y)`` pair of tensors (``y``
    optional: without labels the lab shows statistics but no accuracy). Mode changes apply to
    the lab's copy of ``model`` unless ``inplace=True``. ``block=False`` returns at once and
    leaves the Qt event loop to the caller (``%gui qt`` in a notebook, or ``app.exec()``).
    Details: ``xnorlab.gui.show``.
    """
    # Qt loads only when the lab opens: `import xnorlab` must stay light and headless.
    from xnorlab.gui.show import show as open_lab

    return open_lab(
        model, data, class_names=class_names, example_input=example_input, inplace=inplace,
        block=block,
    )  # fmt: skip


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
    "__version__",
    "binarize_model",
    "binarize_weight",
    "current_modes",
    "deploy",
    "float_mode",
    "input_scale_kmap",
    "input_scale_scalar",
    "layer_macs",
    "list_layers",
    "native_backend",
    "preset_modes",
    "restore_float",
    "set_backend",
    "show",
    "sign_nonzero",
    "ste_sign",
    "unbinarizable_layers",
    "weight_scale_alpha",
    "xnor_conv2d",
    "xnor_linear",
]
