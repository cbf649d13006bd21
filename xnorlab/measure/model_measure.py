"""Whole-model measurements for the metrics panel: memory, latency and accuracy, float vs
the current binarization.

Qt-free. Every function works on a private copy of the model's module tree (``detached_copy``,
weights shared, configs copied) so it may run in a worker thread while the user keeps toggling
layers of the live model. Long functions take ``progress(fraction, message)`` and
``should_cancel()`` callables and raise ``xnorlab.common.tasks.Cancelled`` when asked to stop.
Results are frozen dataclasses (data first; the GUI only renders them).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xnorlab.binary.layers import BinarizableLayer
from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import copy_model, float_mode, iter_binarizable
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import CancelFn, Cancelled, ProgressFn, check_cancel, no_progress

FLOAT_BITS = 32
ALPHA_BYTES = 4  # one float32 alpha per output channel / row
MIN_REPEATS = 3  # timed runs per side even when a time budget is tight


def detached_copy(model: nn.Module) -> nn.Module:
    """Copy of ``model``'s module tree sharing its Parameters and buffers, without native caches.

    Layer configs are copied, so a worker may switch the copy's modes and backends (and add
    hooks) while the GUI thread changes the original's. Nothing here writes to weights.
    """
    return copy_model(model, share_tensors=True)


# --------------------------------------------------------------------------------- memory


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


def _tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _layer_memory(name: str, module: nn.Conv2d | nn.Linear) -> LayerMemory:
    mode = module.mode if isinstance(module, BinarizableLayer) else Mode.FLOAT
    weight_float = module.weight.numel() * FLOAT_BITS // 8
    bias = 0 if module.bias is None else _tensor_bytes(module.bias)
    weight_packed = (
        weight_float if mode is Mode.FLOAT else packed_weight_bytes(tuple(module.weight.shape))
    )
    return LayerMemory(name, mode, weight_float + bias, weight_packed + bias)


def model_memory(model: nn.Module) -> MemoryReport:
    """Storage of ``model`` as float32 and with its binarized layers packed.

    Float: every weight at 32 bits. Packed: BWN and XNOR weights at 1 bit plus a float32 alpha
    per output channel; biases, float layers, BatchNorm parameters and buffers unchanged
    (the paper's "32x" counts weight bits only).
    """
    layers = [_layer_memory(name, module) for name, module in iter_binarizable(model)]
    counted = {
        id(p) for _, module in iter_binarizable(model) for p in module.parameters(recurse=False)
    }
    other = sum(_tensor_bytes(p) for p in model.parameters() if id(p) not in counted)
    other += sum(_tensor_bytes(b) for b in model.buffers() if b.is_floating_point())
    return MemoryReport(layers=tuple(layers), other_bytes=other)


# -------------------------------------------------------------------------------- latency


@dataclass(frozen=True)
class LayerLatency:
    """Time of one layer in one forward pass (medians over the profiled runs, seconds).

    ``current_s`` is the layer's wall time in its current mode; ``pack_s``, ``popcount_s`` and
    ``scale_s`` come from the native engine's profiler; ``other_s = current_s - pack_s -
    popcount_s - scale_s`` (allocation, padding correction, Python, and everything of a layer
    that runs in torch).
    """

    name: str
    mode: Mode
    float_s: float
    current_s: float
    pack_s: float
    popcount_s: float
    scale_s: float
    other_s: float
    native_calls: int


@dataclass(frozen=True)
class LatencyReport:
    """End-to-end latency, torch float vs the current configuration through the native engine."""

    batch: int
    repeats: int
    float_s: float  # median end-to-end seconds, every layer float, torch
    current_s: float  # median end-to-end seconds, current modes, native backend
    float_min_max_s: tuple[float, float]
    current_min_max_s: tuple[float, float]
    engine: str  # e.g. "native avx512, 2 threads" or "torch simulation (...)"
    layers: tuple[LayerLatency, ...]

    @property
    def speedup(self) -> float:
        """``float_s / current_s`` (> 1 means the current configuration is faster)."""
        return self.float_s / self.current_s if self.current_s > 0 else float("nan")


def engine_description() -> str:
    """One line naming the engine XNOR layers run in (ISA and threads when native)."""
    try:
        from xnorlab import engine as kernels

        info = kernels.info()
    except (ImportError, AttributeError) as exc:
        return f"torch simulation (native engine unavailable: {exc})"
    return f"{info.get('backend', '?')} {info.get('isa', '?')}, {info.get('threads', '?')} threads"


@contextmanager
def _native_engine(model: nn.Module) -> Iterator[tuple[Callable[[], Any], str]]:
    """Run ``model`` through the native engine; yield (profiling context factory, engine text).

    Without the engine's layer integration the model runs in the torch simulation, and the
    engine text says so (the latency is then *not* the packed engine's).
    """
    try:
        from xnorlab import engine as kernels
        from xnorlab.runtime.integration import native_backend

        profile = kernels.profile
    except (ImportError, AttributeError) as exc:
        yield _empty_profile, f"torch simulation (native engine not usable: {exc})"
        return
    with native_backend(model):
        yield profile, engine_description()


@contextmanager
def _empty_profile() -> Iterator[list[Any]]:
    yield []


def _time_forward(
    model: nn.Module, x: torch.Tensor, runs: int, tick: Callable[[], None]
) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
        tick()
    return times


@contextmanager
def _layer_clock(
    model: nn.Module, records: list[Any]
) -> Iterator[dict[str, list[tuple[float, list[Any]]]]]:
    """Hooks timing each binarizable layer; yields name -> [(seconds, kernel records)] per call."""
    calls: dict[str, list[tuple[float, list[Any]]]] = {}
    started: dict[str, tuple[float, int]] = {}
    handles = []
    for name, module in iter_binarizable(model):

        def pre(mod: nn.Module, args: Any, name: str = name) -> None:
            started[name] = (time.perf_counter(), len(records))

        def post(mod: nn.Module, args: Any, out: Any, name: str = name) -> None:
            start, first = started.pop(name)
            calls.setdefault(name, []).append((time.perf_counter() - start, records[first:]))

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class _LayerSample:
    wall_s: list[float]
    pack_s: list[float]
    popcount_s: list[float]
    scale_s: list[float]
    calls: int = 0


def _profile_layers(
    model: nn.Module,
    x: torch.Tensor,
    runs: int,
    profile: Callable[[], Any],
    tick: Callable[[], None],
) -> dict[str, _LayerSample]:
    """Run ``runs`` hooked and profiled forwards; collect per-layer wall time and kernel split."""
    samples: dict[str, _LayerSample] = {}
    for _ in range(runs):
        with profile() as records, _layer_clock(model, records) as calls:
            model(x)
        for name, per_call in calls.items():
            sample = samples.setdefault(name, _LayerSample([], [], [], []))
            kernel = [rec for _, recs in per_call for rec in recs]
            sample.wall_s.append(sum(seconds for seconds, _ in per_call))
            sample.pack_s.append(sum(float(getattr(r, "pack_s", 0.0)) for r in kernel))
            sample.popcount_s.append(sum(float(getattr(r, "popcount_s", 0.0)) for r in kernel))
            sample.scale_s.append(sum(float(getattr(r, "scale_s", 0.0)) for r in kernel))
            sample.calls = len(kernel)
        tick()
    return samples


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _layer_latencies(
    model: nn.Module, floats: dict[str, _LayerSample], currents: dict[str, _LayerSample]
) -> tuple[LayerLatency, ...]:
    out = []
    for name, module in iter_binarizable(model):
        if name not in currents:
            continue  # layer not reached by the forward pass
        cur = currents[name]
        wall, pack = _median(cur.wall_s), _median(cur.pack_s)
        popcount, scale = _median(cur.popcount_s), _median(cur.scale_s)
        mode = module.mode if isinstance(module, BinarizableLayer) else Mode.FLOAT
        float_s = _median(floats[name].wall_s) if name in floats else float("nan")
        other = max(0.0, wall - pack - popcount - scale)
        out.append(LayerLatency(name, mode, float_s, wall, pack, popcount, scale, other, cur.calls))
    return tuple(out)


def _runs_within(budget_s: float, one_run_s: float, repeats: int) -> int:
    """How many timed runs fit in ``budget_s`` (at least ``MIN_REPEATS``, at most ``repeats``)."""
    return max(min(MIN_REPEATS, repeats), min(repeats, int(budget_s / max(one_run_s, 1e-9))))


def _timed_phase(
    model: nn.Module, x: torch.Tensor, plan: tuple[int, int, int], budget_s: float | None,
    profile: Callable[[], Any], tick: Callable[[], None],
) -> tuple[list[float], dict[str, _LayerSample]]:  # fmt: skip
    """Warm up, time end-to-end runs (fitted to ``budget_s``), then profile per layer."""
    warmup, repeats, profile_runs = plan
    warm = _time_forward(model, x, max(warmup, 1), tick)
    runs = repeats if budget_s is None else _runs_within(budget_s, warm[-1], repeats)
    times = _time_forward(model, x, runs, tick)
    return times, _profile_layers(model, x, profile_runs, profile, tick)


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    batch: int = 1,
    repeats: int = 10,
    warmup: int = 2,
    profile_runs: int = 3,
    time_budget_s: float | None = None,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> LatencyReport:
    """Time ``model`` end to end in torch float and in its current modes (native engine).

    Works on a detached copy (the caller's model is never touched). End-to-end times are the
    median of ``repeats`` forward passes of a random batch after ``warmup`` passes (at least
    one), without hooks; the per-layer split comes from ``profile_runs`` further passes with
    timing hooks and the native profiler (``xnorlab.engine.profile``). ``time_budget_s``
    caps the timed runs of each side at about half the budget (never fewer than
    ``MIN_REPEATS``), so a large model is measured in bounded time.
    """
    if batch < 1 or repeats < 1 or profile_runs < 1 or warmup < 0:
        raise XnorlabError("batch, repeats and profile_runs must be >= 1, warmup >= 0")
    report = progress or no_progress
    work = detached_copy(model).eval()
    x = torch.randn(batch, *input_shape)
    plan = (warmup, repeats, profile_runs)
    total, done = 2 * (max(warmup, 1) + repeats + profile_runs), [0]
    half = None if time_budget_s is None else time_budget_s / 2

    def tick() -> None:
        done[0] += 1
        report(min(done[0] / total, 0.99), "measuring latency")
        check_cancel(should_cancel, "latency measurement")

    with torch.no_grad():
        with float_mode(work):
            float_times, float_layers = _timed_phase(work, x, plan, half, _empty_profile, tick)
        with _native_engine(work) as (profile, engine):
            current_times, current_layers = _timed_phase(work, x, plan, half, profile, tick)
    report(1.0, "latency measured")
    return LatencyReport(
        batch=batch,
        repeats=min(len(float_times), len(current_times)),
        float_s=statistics.median(float_times),
        current_s=statistics.median(current_times),
        float_min_max_s=(min(float_times), max(float_times)),
        current_min_max_s=(min(current_times), max(current_times)),
        engine=engine,
        layers=_layer_latencies(work, float_layers, current_layers),
    )


# ----------------------------------------------------------------------------- prediction


@dataclass(frozen=True)
class TopK:
    """The ``k`` most probable classes of one input, most probable first."""

    indices: tuple[int, ...]
    labels: tuple[str, ...]
    probabilities: tuple[float, ...]  # softmax probabilities in [0, 1]


@dataclass(frozen=True)
class PredictionPair:
    """Top-k of one input with every layer float and with the current modes."""

    float_topk: TopK
    current_topk: TopK


def _topk(probabilities: torch.Tensor, class_names: list[str], k: int) -> list[TopK]:
    values, indices = probabilities.topk(min(k, probabilities.shape[1]), dim=1)
    out = []
    for row_values, row_indices in zip(values.tolist(), indices.tolist(), strict=True):
        labels = tuple(
            class_names[i] if i < len(class_names) else f"class {i}" for i in row_indices
        )
        out.append(TopK(tuple(row_indices), labels, tuple(row_values)))
    return out


def _check_images(images: torch.Tensor, input_shape: tuple[int, ...] | None) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise XnorlabError("images must be a 4-D tensor (N, C, H, W)")
    if not images.is_floating_point():
        raise XnorlabError(f"images must be floating point, got {images.dtype}")
    if input_shape is not None and tuple(images.shape[1:]) != tuple(input_shape):
        raise XnorlabError(
            f"images have shape {tuple(images.shape[1:])}, the model expects {tuple(input_shape)}"
        )
    if not bool(torch.isfinite(images).all()):
        raise XnorlabError("images contain NaN or infinite values")


def compare_predictions(
    model: nn.Module,
    images: torch.Tensor,
    class_names: list[str],
    *,
    k: int = 5,
    input_shape: tuple[int, ...] | None = None,
) -> list[PredictionPair]:
    """Softmax top-``k`` of each image, every layer float vs the current modes.

    ``images`` is a preprocessed batch ``(N, C, H, W)``. Runs on a detached copy in eval mode
    under ``torch.no_grad`` (the caller's model is not touched).
    """
    if k < 1:
        raise XnorlabError(f"k must be >= 1, got {k}")
    _check_images(images, input_shape)
    work = detached_copy(model).eval()
    try:
        with torch.no_grad():
            with float_mode(work):
                float_probs = torch.softmax(work(images).float(), dim=1)
            current_probs = torch.softmax(work(images).float(), dim=1)
    except RuntimeError as exc:
        raise XnorlabError(f"the model cannot run on these inputs: {exc}") from None
    floats = _topk(float_probs, class_names, k)
    currents = _topk(current_probs, class_names, k)
    return [PredictionPair(f, c) for f, c in zip(floats, currents, strict=True)]


@dataclass(frozen=True)
class FilePrediction:
    """One image file: the input exactly as the model sees it and its two top-k lists."""

    path: str
    model_input: torch.Tensor  # (C, H, W), normalized
    pair: PredictionPair


def predict_files(
    model: nn.Module,
    paths: list[str],
    preprocessing: Any,
    class_names: list[str],
    *,
    k: int = 5,
    input_shape: tuple[int, ...] | None = None,
    should_cancel: CancelFn | None = None,
) -> list[FilePrediction]:
    """Load image files with the model's ``preprocessing`` and compare float vs current top-k.

    All files are decoded before anything is predicted: one unreadable file raises
    ``XnorlabError`` naming it (nothing is returned for the others).
    """
    from xnorlab.data.images import load_image

    if not paths:
        raise XnorlabError("no image files given")
    inputs = []
    for path in paths:
        check_cancel(should_cancel, "prediction")
        try:
            inputs.append(load_image(path, preprocessing))
        except XnorlabError as exc:
            name = Path(path).name
            raise XnorlabError(f"{name}: {exc}" if name not in str(exc) else str(exc)) from None
    batch = torch.stack(inputs)
    pairs = compare_predictions(model, batch, class_names, k=k, input_shape=input_shape)
    return [
        FilePrediction(str(path), tensor, pair)
        for path, tensor, pair in zip(paths, inputs, pairs, strict=True)
    ]


# ------------------------------------------------------------------------------- accuracy


@dataclass(frozen=True)
class AccuracyReport:
    """Validation top-1 with every layer float and with the current modes (fractions)."""

    float_top1: float
    current_top1: float
    samples: int
    float_reused: bool  # float_top1 was given by the caller (cached), not recomputed

    @property
    def drop(self) -> float:
        """``float_top1 - current_top1`` (positive: binarization costs accuracy)."""
        return self.float_top1 - self.current_top1


def _first_items(dataset: Any, max_samples: int | None) -> Any:
    from torch.utils.data import Subset

    size = len(dataset)
    if max_samples is None or max_samples >= size:
        return dataset
    if max_samples < 1:
        raise XnorlabError(f"max_samples must be >= 1, got {max_samples}")
    return Subset(dataset, range(max_samples))


def _top1(
    model: nn.Module, data: Any, class_names: list[str] | None, batch_size: int,
    progress: Callable[[float], None], should_cancel: CancelFn | None,
) -> float:  # fmt: skip
    from xnorlab.measure.evaluate import evaluate

    result = evaluate(
        model, data, class_names=class_names or None, batch_size=batch_size, topk=1,
        progress=lambda fraction, *_: progress(fraction), should_cancel=should_cancel,
    )  # fmt: skip
    if not result.complete:
        raise Cancelled("accuracy evaluation cancelled")
    return result.top1


def compare_accuracy(
    model: nn.Module,
    dataset: Any,
    class_names: list[str] | None = None,
    *,
    max_samples: int | None = None,
    float_top1: float | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> AccuracyReport:
    """Top-1 on the first ``max_samples`` items of ``dataset``: all-float vs current modes.

    Both numbers come from ``xnorlab.measure.evaluate.evaluate``. Pass a cached ``float_top1``
    (same model weights and samples) to skip the float pass; when no layer is binarized the
    current pass is skipped too (the numbers are equal by definition).
    """
    report = progress or no_progress
    data = _first_items(dataset, max_samples)
    work = detached_copy(model)
    binarized = any(
        isinstance(m, BinarizableLayer) and m.mode is not Mode.FLOAT
        for _, m in iter_binarizable(work)
    )
    passes = int(float_top1 is None) + int(binarized)
    done = [0]

    def step(label: str) -> Callable[[float], None]:
        base = done[0]
        return lambda f: report((base + f) / max(passes, 1), f"accuracy ({label})")

    reused = float_top1 is not None
    if float_top1 is None:
        with float_mode(work):
            float_top1 = _top1(work, data, class_names, batch_size, step("float"), should_cancel)
        done[0] += 1
    current = float_top1
    if binarized:
        current = _top1(work, data, class_names, batch_size, step("current"), should_cancel)
    return AccuracyReport(float_top1, current, len(data), reused)
