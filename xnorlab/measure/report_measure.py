"""Measurements behind the report: accuracy, per-layer latency, mode switching, file sizes.

Helpers of ``xnorlab.report.build.build_report``; every function that changes a model's layer
configs restores them in ``finally``.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from xnorlab.binary.layers import LayerConfig
from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import iter_binarizable, wrapped_layers

Tick = Callable[[], None]


def only_layer_configs(model: nn.Module, name: str, mode: Mode) -> dict[str, LayerConfig]:
    """Configs with every wrapper float except ``name``, which gets ``mode``."""
    return {
        other: layer.config.updated(mode=mode if other == name else Mode.FLOAT)
        for other, layer in wrapped_layers(model).items()
    }


def top1_accuracy(
    model: nn.Module, inputs: Tensor, labels: Tensor, batch_size: int, tick: Tick
) -> float:
    """Top-1 accuracy in percent of ``model`` on ``inputs`` (evaluated in batches, no grad)."""
    correct = 0
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            logits = model(inputs[start : start + batch_size])
            predicted = logits.argmax(dim=1)
            correct += int((predicted == labels[start : start + batch_size]).sum())
            tick()
    return 100.0 * correct / max(1, len(inputs))


def native_engine_context(model: nn.Module, engine: str) -> tuple[Any, str | None]:
    """A context manager running ``model`` in the requested engine, and a note if it can't.

    ``engine == "native"`` uses ``xnorlab.runtime.integration.native_backend`` when the native
    engine is importable; otherwise the torch simulation runs and the note says so.
    """
    if engine != "native":
        return nullcontext(model), None
    try:
        from xnorlab.runtime.integration import native_backend
    except ImportError as exc:
        return nullcontext(model), f"native engine unavailable ({exc}); torch simulation timed"
    return native_backend(model), None


KERNEL_PARTS = ("pack_s", "popcount_s", "scale_s")


def kernel_profile() -> Callable[[], Any]:
    """``xnorlab.engine.profile`` (a context yielding a list of ``KernelTiming``), or a stub."""
    try:
        from xnorlab.engine import profile
    except ImportError:
        return _no_profile
    return profile


@contextmanager
def _no_profile() -> Iterator[list[Any]]:
    yield []


@dataclass
class LayerTiming:
    """Median seconds of one layer: wall time, and the engine's split of its native calls."""

    wall_s: float
    pack_s: float | None = None
    popcount_s: float | None = None
    scale_s: float | None = None


@contextmanager
def _layer_clock(model: nn.Module, records: list[Any]) -> Iterator[dict[str, list[float]]]:
    """Hooks adding each binarizable layer's wall time and kernel split of the next forward.

    Yields name -> ``[wall_s, pack_s, popcount_s, scale_s, native_calls]``.
    """
    spent: dict[str, list[float]] = {}
    started: dict[str, tuple[float, int]] = {}
    handles = []
    for name, module in iter_binarizable(model):

        def pre(_m: nn.Module, _a: Any, name: str = name) -> None:
            started[name] = (time.perf_counter(), len(records))

        def post(_m: nn.Module, _a: Any, _o: Any, name: str = name) -> None:
            start, first = started.pop(name)
            row = spent.setdefault(name, [0.0, 0.0, 0.0, 0.0, 0.0])
            row[0] += time.perf_counter() - start
            for record in records[first:]:
                for index, part in enumerate(KERNEL_PARTS, start=1):
                    row[index] += float(getattr(record, part, 0.0))
                row[4] += 1

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        yield spent
    finally:
        for handle in handles:
            handle.remove()


def _median_timings(rows: dict[str, list[list[float]]]) -> dict[str, LayerTiming]:
    timings = {}
    for name, runs in rows.items():
        medians = [statistics.median(run[i] for run in runs) for i in range(4)]
        native = any(run[4] > 0 for run in runs)
        split = medians[1:] if native else [None, None, None]
        timings[name] = LayerTiming(medians[0], *split)
    return timings


def time_model(
    model: nn.Module, x: Tensor, repeats: int, tick: Tick, budget_s: float = 8.0
) -> tuple[float, dict[str, LayerTiming]]:
    """Median end-to-end seconds of ``model(x)`` and per-layer ``LayerTiming``.

    One warm-up run, then up to ``repeats`` plain runs (end to end) and as many hooked runs
    under the engine's profiler (per-layer wall time and kernel split); fewer (at least 3)
    when ``repeats`` of each would exceed ``budget_s``. ``tick`` is called
    ``2 * repeats + 1`` times whatever the count.
    """
    profile = kernel_profile()
    with torch.no_grad():
        start = time.perf_counter()
        model(x)
        warm_s = time.perf_counter() - start
        tick()
        count = max(3, min(repeats, int(budget_s / max(2 * warm_s, 1e-9))))
        totals = []
        for _ in range(count):
            start = time.perf_counter()
            model(x)
            totals.append(time.perf_counter() - start)
        rows: dict[str, list[list[float]]] = {}
        for _ in range(count):
            with profile() as records, _layer_clock(model, records) as spent:
                model(x)
            for name, row in spent.items():
                rows.setdefault(name, []).append(row)
    for _ in range(2 * repeats):
        tick()
    return statistics.median(totals), _median_timings(rows)


def state_dict_file_bytes(model: nn.Module) -> int:
    """Size of ``torch.save(model.state_dict())``: the float file a user would ship."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def shapes_per_layer(model: nn.Module, x: Tensor) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Name -> (input shape, output shape) of one sample, from a no-grad forward of ``x[:1]``."""
    shapes: dict[str, tuple[tuple[int, ...], ...]] = {}
    handles = []
    for name, module in iter_binarizable(model):

        def hook(_m: nn.Module, args: Any, out: Tensor, name: str = name) -> None:
            shapes[name] = (tuple(args[0].shape[1:]), tuple(out.shape[1:]))

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    return shapes
