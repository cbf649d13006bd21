"""How much each binarizable layer costs, measured both ways on the same items.

* **binarize alone**: this layer in its mode (XNOR for a layer configured float), every other
  layer float; ``cost = acc(all float) - acc(this one binarized)``. It says what a layer costs
  in a float-trained model.
* **restore alone**: this layer float, every other layer as configured;
  ``cost = acc(this one float) - acc(configured)``. It says what a layer costs where it is; for
  a binary-trained model (whose all-float run is poor) it is the readable figure.

A positive cost always means binarizing that layer makes the model worse. Every figure is a
``PairedDifference`` on the same items (interval and McNemar verdict), so a cost "within
noise" is no evidence either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor, nn

from xnorlab.binary.modes import Backend, Mode
from xnorlab.binary.surgery import float_mode, layer_configs, wrapped_layers
from xnorlab.common.tasks import CancelFn, ProgressFn, check_cancel, no_progress
from xnorlab.data.sampling import SAMPLE_SEED, SampleInfo
from xnorlab.measure.accuracy import (
    alone_mode,
    only_layer_configs,
    restored_layer_configs,
    sample_tensors,
    tensor_correct,
)
from xnorlab.measure.intervals import PairedDifference
from xnorlab.measure.layers import detached_copy
from xnorlab.measure.machine import engine_context

Tick = Callable[[], None]


@dataclass(frozen=True)
class LayerSensitivity:
    """One layer's cost both ways (see the module docstring).

    ``binarize_alone``: baseline all float, candidate only this layer in ``alone_mode``.
    ``restore_alone``: baseline this layer float and the rest configured, candidate the
    configured model; ``None`` for a layer that is float in the configuration (nothing to
    restore).
    """

    name: str
    mode: Mode  # configured mode
    alone_mode: Mode  # mode of the layer in the binarize-alone run
    binarize_alone: PairedDifference
    restore_alone: PairedDifference | None

    def text(self) -> str:
        restore = self.restore_alone.text() if self.restore_alone else "- (float here)"
        return (
            f"{self.name} ({self.mode}): binarize alone ({self.alone_mode}) "
            f"{self.binarize_alone.text()}; restore alone {restore}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": str(self.mode),
            "alone_mode": str(self.alone_mode),
            "binarize_alone": self.binarize_alone.to_json(),
            "restore_alone": None if self.restore_alone is None else self.restore_alone.to_json(),
        }


@dataclass(frozen=True)
class SensitivityReport:
    """All float vs configured (``configured``: cost of the whole configuration) and every
    layer's cost both ways, on one sample (``sample``: None when the caller gave tensors)."""

    configured: PairedDifference
    layers: tuple[LayerSensitivity, ...]
    sample: SampleInfo | None = None

    def text(self, class_names: Sequence[str] = ()) -> str:
        lines = [f"configuration (all float - configured): {self.configured.text()}"]
        lines += [layer.text() for layer in self.layers]
        if self.sample is not None:
            lines.append(f"sample: {self.sample.text(class_names)}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "configured": self.configured.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
            "sample": None if self.sample is None else self.sample.to_json(),
        }


def layer_sensitivity(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    batch_size: int,
    tick: Tick,
    *,
    stage: Callable[[str], None] = lambda _message: None,
) -> SensitivityReport:
    """Both sensitivities of every wrapped layer of ``model`` (as configured, in the engine
    the caller chose) on ``inputs``; the configs are restored. ``tick()`` after every batch,
    ``stage(message)`` before every layer."""

    def run() -> np.ndarray:
        return tensor_correct(model, inputs, labels, batch_size, tick)

    with float_mode(model):
        floats = run()
    configured = run()
    layers = []
    for name, layer in wrapped_layers(model).items():
        stage(f"sensitivity of {name}")
        mode = alone_mode(layer.mode)
        with layer_configs(model, only_layer_configs(model, name, mode)):
            binarize = PairedDifference.from_correct(floats.tolist(), run().tolist())
        restore = None
        if layer.mode is not Mode.FLOAT:
            with layer_configs(model, restored_layer_configs(model, name)):
                restored = run()
            restore = PairedDifference.from_correct(restored.tolist(), configured.tolist())
        layers.append(LayerSensitivity(name, layer.mode, mode, binarize, restore))
    total = PairedDifference.from_correct(floats.tolist(), configured.tolist())
    return SensitivityReport(total, tuple(layers))


def sensitivity_passes(model: nn.Module) -> int:
    """How many passes over the sample ``layer_sensitivity`` makes: float, configured, one
    per wrapped layer, one more per binarized layer."""
    layers = wrapped_layers(model).values()
    return 2 + len(layers) + sum(1 for layer in layers if layer.mode is not Mode.FLOAT)


def measure_sensitivity(
    model: nn.Module,
    dataset: Any,
    *,
    max_samples: int | None = 1000,
    seed: int = SAMPLE_SEED,
    batch_size: int = 256,
    backend: Backend = Backend.NATIVE,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> SensitivityReport:
    """``layer_sensitivity`` on a stratified sample of ``dataset`` (for the app): a detached
    copy in eval mode, its binarized layers in ``backend``."""
    report = progress or no_progress
    inputs, labels, info = sample_tensors(dataset, max_samples, seed)
    work = detached_copy(model).eval()
    total = sensitivity_passes(work) * max(1, -(-len(inputs) // batch_size))
    done = [0]

    def tick() -> None:
        done[0] += 1
        report(min(done[0] / total, 0.99), "sensitivity")
        check_cancel(should_cancel, "sensitivity")

    with engine_context(work, backend):
        result = layer_sensitivity(work, inputs, labels, batch_size, tick)
    report(1.0, "sensitivity measured")
    return SensitivityReport(result.configured, result.layers, info)
