"""Per-layer statistics of binarization: what the GUI views and the report show.

All functions are pure (tensors in, numbers/dataclasses out) except ``capture_activations`` and
``compare_layers``, which run the model under ``torch.no_grad`` with temporary forward hooks and
restore everything in ``finally``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from xnorlab.binary.binarize import sign_nonzero, weight_scale_alpha
from xnorlab.binary.layers import BinarizableLayer
from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import float_mode, iter_binarizable

NEAR_ZERO_RELATIVE = 0.05  # |x| <= 5% of mean|x| counts as "near zero" (a fragile sign)


@dataclass(frozen=True)
class WeightStats:
    """Scale and approximation error of ``W ~= alpha * sign(W)`` for one layer.

    ``approx_error = ||W - alpha*B||_F / ||W||_F`` with ``B = sign(W)``, ``alpha`` per filter.
    """

    n_filters: int
    alpha_mean: float
    alpha_min: float
    alpha_max: float
    alpha_std: float
    approx_error: float


def weight_stats(weight: Tensor) -> WeightStats:
    """Alpha statistics over output filters and the relative L2 error of the BWN approximation."""
    with torch.no_grad():
        w = weight.detach().float()
        alpha = weight_scale_alpha(w)
        approx = alpha.reshape((-1,) + (1,) * (w.dim() - 1)) * sign_nonzero(w)
        norm = float(w.norm())
        error = float((w - approx).norm()) / norm if norm > 0 else 0.0
        return WeightStats(
            n_filters=int(alpha.numel()),
            alpha_mean=float(alpha.mean()),
            alpha_min=float(alpha.min()),
            alpha_max=float(alpha.max()),
            alpha_std=float(alpha.std(unbiased=False)),
            approx_error=error,
        )


@dataclass(frozen=True)
class SignStats:
    """How fragile the signs of a layer's input are.

    ``near_zero_fraction``: share of entries with ``|x| <= 0.05 * mean|x|``;
    ``positive_fraction``: share with ``sign(x) = +1``; ``flip_rate``: share whose sign differs
    from a reference input (the same layer's input in the float model), NaN without reference.
    """

    near_zero_fraction: float
    positive_fraction: float
    flip_rate: float


def sign_stats(
    x: Tensor, reference: Tensor | None = None, near_zero: float = NEAR_ZERO_RELATIVE
) -> SignStats:
    """Sign statistics of ``x``, and the sign-flip rate against ``reference`` if given."""
    with torch.no_grad():
        x = x.detach().float()
        if x.numel() == 0:
            return SignStats(math.nan, math.nan, math.nan)
        threshold = near_zero * float(x.abs().mean())
        signs = sign_nonzero(x)
        flip = math.nan
        if reference is not None:
            if reference.shape != x.shape:
                raise ValueError(f"reference shape {tuple(reference.shape)} != {tuple(x.shape)}")
            flip = float((sign_nonzero(reference.detach().float()) != signs).float().mean())
        return SignStats(
            near_zero_fraction=float((x.abs() <= threshold).float().mean()),
            positive_fraction=float((signs > 0).float().mean()),
            flip_rate=flip,
        )


def relative_error(output: Tensor, reference: Tensor) -> float:
    """``||output - reference||_F / ||reference||_F`` (0 when both are 0, inf if only ref is)."""
    diff = float((output.detach().float() - reference.detach().float()).norm())
    ref_norm = float(reference.detach().float().norm())
    if ref_norm == 0:
        return 0.0 if diff == 0 else math.inf
    return diff / ref_norm


def correlation(output: Tensor, reference: Tensor) -> float:
    """Pearson correlation of the flattened tensors (NaN when either is constant)."""
    a = output.detach().double().flatten()
    b = reference.detach().double().flatten()
    a = a - a.mean()
    b = b - b.mean()
    denom = float(a.norm() * b.norm())
    return float((a * b).sum()) / denom if denom > 0 else math.nan


def histogram(
    values: Tensor | np.ndarray, bins: int = 64, value_range: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, edges)`` of the finite values; ``len(edges) == bins + 1``."""
    data = values.detach().float().cpu().numpy() if isinstance(values, Tensor) else values
    flat = np.asarray(data, dtype=np.float64).ravel()
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return np.zeros(bins, dtype=np.int64), np.linspace(-1.0, 1.0, bins + 1)
    lo, hi = value_range if value_range is not None else (float(flat.min()), float(flat.max()))
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(flat, bins=bins, range=(lo, hi))
    return counts, edges


@dataclass
class LayerIO:
    """The input and output a layer saw in one forward pass."""

    input: Tensor
    output: Tensor


def capture_activations(
    model: nn.Module, x: Tensor, names: Iterable[str] | None = None
) -> dict[str, LayerIO]:
    """Run ``model(x)`` without grad and return the input/output of the named layers.

    ``names`` defaults to every binarizable layer. Hooks are removed in ``finally``; a layer
    called several times keeps its last call.
    """
    modules = dict(model.named_modules())
    wanted = list(names) if names is not None else [n for n, _ in iter_binarizable(model)]
    missing = [n for n in wanted if n not in modules]
    if missing:
        raise KeyError(f"no layer named {missing[0]!r}")
    captured: dict[str, LayerIO] = {}
    handles = []
    for name in wanted:

        def hook(_m: nn.Module, inputs: tuple[Tensor, ...], out: Tensor, name: str = name) -> None:
            captured[name] = LayerIO(inputs[0].detach(), out.detach())

        handles.append(modules[name].register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return captured


@dataclass(frozen=True)
class LayerComparison:
    """One layer, float model vs current configuration, on the same batch.

    ``flip_rate``: input signs that differ between the float run and the configured run
    (errors from earlier layers propagate). ``local_error`` / ``local_correlation``: the layer's
    own error: its current-mode output vs its float output *on the same (configured-run) input*.
    ``propagated_error``: configured-run output vs float-run output (accumulated error).
    """

    name: str
    mode: Mode
    sign: SignStats
    local_error: float
    local_correlation: float
    propagated_error: float


def _float_output(module: nn.Module, x: Tensor) -> Tensor:
    if isinstance(module, BinarizableLayer):
        saved = module.config
        try:
            module.config = saved.updated(mode=Mode.FLOAT)
            out: Tensor = module(x)
            return out
        finally:
            module.config = saved
    plain: Tensor = module(x)
    return plain


def compare_layers(
    model: nn.Module, x: Tensor, names: Iterable[str] | None = None
) -> dict[str, LayerComparison]:
    """Compare every (or the named) binarizable layer in float vs its current mode."""
    wanted = list(names) if names is not None else [n for n, _ in iter_binarizable(model)]
    was_training = model.training
    model.eval()
    try:
        configured = capture_activations(model, x, wanted)
        with float_mode(model):
            reference = capture_activations(model, x, wanted)
        modules = dict(model.named_modules())
        result = {}
        with torch.no_grad():
            for name in wanted:
                module = modules[name]
                mode = module.mode if isinstance(module, BinarizableLayer) else Mode.FLOAT
                io, ref = configured[name], reference[name]
                local_ref = _float_output(module, io.input)
                result[name] = LayerComparison(
                    name=name,
                    mode=mode,
                    sign=sign_stats(io.input, ref.input),
                    local_error=relative_error(io.output, local_ref),
                    local_correlation=correlation(io.output, local_ref),
                    propagated_error=relative_error(io.output, ref.output),
                )
        return result
    finally:
        model.train(was_training)


NONNEGATIVE_INPUT_HINT = (
    "input never negative (e.g. right after a ReLU): sign() makes every input bit +1, so an "
    "XNOR layer sees a constant; put BatchNorm before the sign (the paper's order: BatchNorm "
    "-> sign -> binary conv)"
)


def nonnegative_input_layers(model: nn.Module, x: Tensor) -> list[str]:
    """Binarizable layers that saw no negative input entry while ``model(x)`` ran.

    Such a layer in XNOR mode binarizes its whole input to +1 (``NONNEGATIVE_INPUT_HINT``).
    """
    captured = capture_activations(model, x)
    return [name for name, io in captured.items() if float(io.input.min()) >= 0.0]
