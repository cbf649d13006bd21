"""``xnorlab train MODEL --data DATA --modes PRESET|FILE --epochs N --out FILE``.

Trains (or fine-tunes: "binarize then recover") a model in a mode map with the paper's scheme
(``xnorlab.train.training``); a progress bar goes to stderr, the best checkpoint to ``--out``.
Ctrl-C cancels and still leaves a valid checkpoint.
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType
from typing import Any

from torch import nn

from xnorlab.binary.surgery import ModeMapError, binarize_model
from xnorlab.cli.common import add_layer_settings, add_trust, layer_settings
from xnorlab.cli.progress import ProgressBar
from xnorlab.common.errors import XnorlabError
from xnorlab.data.bundle import DatasetBundle
from xnorlab.data.datasets import load_dataset, match_classes
from xnorlab.models.loaded import LoadedModel
from xnorlab.models.spec import load_model_spec
from xnorlab.models.zoo import build_arch
from xnorlab.train.training import TrainConfig, train


def add_mode_arguments(parser: argparse.ArgumentParser, default: str | None) -> None:
    """``--modes`` plus the layer settings shared by train, eval and predict."""
    parser.add_argument(
        "--modes",
        default=default,
        help="preset (paper, paper-bwn, xnor, bwn, float) or a JSON mode file "
        f"(default: {default or 'the modes stored with the model'})",
    )
    add_layer_settings(parser)
    add_trust(parser)


def apply_modes(model: nn.Module, args: argparse.Namespace) -> None:
    """Apply ``--modes`` and layer settings (nothing given: the model keeps its stored map)."""
    settings = layer_settings(args)
    if args.modes is None and not settings:
        return
    try:
        binarize_model(model, args.modes or {}, warn_first_last=True, **settings)
    except ValueError as exc:
        if isinstance(exc, ModeMapError):
            raise
        raise XnorlabError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model spec: lenet (new), demo:lenet, resnet18:w.pth, f.pt")
    parser.add_argument(
        "--data",
        default=None,
        help="mnist5k, digits, mnist:ROOT, cifar10:ROOT, "
        "fashionmnist:ROOT or a folder (default: the model's data)",
    )
    add_mode_arguments(parser, None)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--out", required=True, help="checkpoint to write (.pt, .safetensors)")
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shift", type=float, default=TrainConfig.shift_px, help="pixels")
    parser.add_argument("--rotate", type=float, default=TrainConfig.rotate_deg, help="degrees")
    parser.add_argument("--scale", type=float, default=TrainConfig.scale, help="e.g. 0.1")
    parser.add_argument("--max-items", type=int, default=None, help="train on a seeded subset")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")


def _fit_data(loaded: LoadedModel, bundle: DatasetBundle) -> tuple[nn.Module, list[str]]:
    """Match the data's classes to the model's; an untrained model is rebuilt for them."""
    untrained = loaded.card.get("trained") is False
    names = [n.lower() for n in loaded.class_names]
    fits = all(n.lower() in names for n in bundle.class_names)
    if fits or not untrained or not loaded.arch:
        return loaded.model, loaded.class_names
    return build_arch(loaded.arch, len(bundle.class_names)), list(bundle.class_names)


class _SigintCancel:
    """Turn Ctrl-C into a cancel request, so training stops after the batch with a checkpoint."""

    def __init__(self) -> None:
        self.requested = False
        self.previous = signal.getsignal(signal.SIGINT)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def __call__(self) -> bool:
        return self.requested

    def restore(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self.previous)


def run(args: argparse.Namespace) -> int:
    loaded = load_model_spec(args.model, trust=args.trust)
    data_spec = args.data or loaded.default_data
    if not data_spec:
        raise XnorlabError(f"give --data: {args.model} has no default data set")
    bundle = load_dataset(data_spec, loaded.preprocessing)
    model, class_names = _fit_data(loaded, bundle)
    bundle = match_classes(bundle, class_names)
    apply_modes(model, args)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        shift_px=args.shift,
        rotate_deg=args.rotate,
        scale=args.scale,
        device=args.device,
        max_train_items=args.max_items,
    )
    meta: dict[str, Any] = {
        "arch": loaded.arch,
        "num_classes": len(class_names),
        "class_names": class_names,
        "default_data": data_spec,
        "preprocessing": bundle.preprocessing.to_json(),
    }
    bar = ProgressBar()
    cancel = _SigintCancel()
    try:
        result = train(model, bundle, config, bar, cancel, args.out, meta)
    finally:
        cancel.restore()
        bar.close()
    state = "cancelled" if result.cancelled else "done"
    print(
        f"{state}: best val top-1 {result.best_val_acc:.4f} at epoch {result.best_epoch}, "
        f"{result.seconds:.1f} s; checkpoint {result.checkpoint}"
    )
    return 0
