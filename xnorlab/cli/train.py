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
from xnorlab.cli import args as cli_args
from xnorlab.cli.common import add_layer_settings, add_trust, layer_settings
from xnorlab.cli.progress import ProgressBar
from xnorlab.common.errors import XnorlabError
from xnorlab.data.bundle import DatasetBundle
from xnorlab.data.datasets import load_dataset, match_classes
from xnorlab.models.checkpoint import CHECKPOINT_SUFFIXES
from xnorlab.models.loaded import LoadedModel
from xnorlab.models.packed_layers import has_packed_layers
from xnorlab.models.spec import load_model_spec
from xnorlab.models.zoo import build_arch
from xnorlab.train.training import KeepEpoch, TrainConfig, train


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
    parser.add_argument("--epochs", type=cli_args.epochs, default=TrainConfig.epochs)
    parser.add_argument(
        "--out",
        required=True,
        type=cli_args.output_file(CHECKPOINT_SUFFIXES),
        help="checkpoint to write (.pt, .pth, .safetensors, .ts)",
    )
    parser.add_argument(
        "--lr",
        type=cli_args.float_in(0.0, 10.0, low_open=True, what="learning rate"),
        default=TrainConfig.lr,
    )
    parser.add_argument("--batch-size", type=cli_args.batch_size, default=TrainConfig.batch_size)
    parser.add_argument("--seed", type=cli_args.int_in(0, 2**63 - 1), default=0)
    parser.add_argument(
        "--shift", type=cli_args.float_in(0.0, 64.0), default=TrainConfig.shift_px, help="pixels"
    )
    parser.add_argument(
        "--rotate",
        type=cli_args.float_in(0.0, 180.0),
        default=TrainConfig.rotate_deg,
        help="degrees",
    )
    parser.add_argument(
        "--scale", type=cli_args.float_in(0.0, 0.9), default=TrainConfig.scale, help="e.g. 0.1"
    )
    parser.add_argument(
        "--max-items", type=cli_args.item_count, default=None, help="train on a seeded subset"
    )
    parser.add_argument(
        "--keep",
        choices=[k.value for k in KeepEpoch],
        default=TrainConfig.keep.value,
        help="last: the last of --epochs (fixed in advance); best: the best epoch on a "
        "stratified --select-fraction of the training split; val is reported either way",
    )
    parser.add_argument(
        "--select-fraction",
        type=cli_args.float_in(0.0, 0.9, low_open=True),
        default=TrainConfig.select_fraction,
        help="share of the training split that selects the epoch with --keep best",
    )
    parser.add_argument(
        "--all-data",
        action="store_true",
        help="final fit on train + val with --keep last (nothing is left to report on)",
    )
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
    if has_packed_layers(loaded.model):
        raise XnorlabError(
            f"{args.model} holds packed 1-bit weights only, which cannot be trained; "
            "train the model it was exported from"
        )
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
        keep=KeepEpoch(args.keep),
        select_fraction=args.select_fraction,
        train_on_all=args.all_data,
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
    figure = (
        "no split left to report on" if result.val is None else f"val top-1 {result.val.text()}"
    )
    print(
        f"{state}: kept epoch {result.kept_epoch} ({result.card.get('kept', config.keep)}); "
        f"{figure}; {result.seconds:.1f} s; checkpoint {result.checkpoint}"
    )
    return 0
