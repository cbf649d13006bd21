"""``xnorlab train MODEL --data DATA --modes PRESET|FILE --epochs N --out FILE``.

Trains (or fine-tunes: "binarize then recover") a model in a mode map with the paper's scheme
(``xnorlab.train.training``); a progress bar goes to stderr, the kept checkpoint to ``--out``.
Ctrl-C cancels and still leaves a valid checkpoint. ``--seed`` fixes the order, the augmentation
and a new model's initial weights.

Several processes: ``--nproc N`` starts N workers on this machine (``xnorlab.train.launch``);
under torchrun (``RANK``/``WORLD_SIZE``/... in the environment) this process is one rank. Either
way the run has the semantics of one process with the same global ``--batch-size`` and seed;
rank 0 alone shows progress and writes ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from typing import Any

import torch
from torch import nn

from xnorlab.binary.surgery import ModeMapError, binarize_model
from xnorlab.cli import args as cli_args
from xnorlab.cli.common import (
    add_layer_settings,
    add_model_arguments,
    add_trust,
    layer_settings,
    load_model,
)
from xnorlab.cli.progress import ProgressBar
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import SigintCancel
from xnorlab.data.bundle import DatasetBundle
from xnorlab.data.datasets import load_dataset, match_classes
from xnorlab.models.checkpoint import CHECKPOINT_SUFFIXES
from xnorlab.models.loaded import LoadedModel
from xnorlab.models.packed_layers import has_packed_layers
from xnorlab.models.zoo import build_arch
from xnorlab.train.distributed import (
    DEFAULT_TIMEOUT_S,
    SINGLE,
    TIMEOUT_RANGE_S,
    World,
    check_batch,
    placement,
    process_group,
    world_from_environ,
)
from xnorlab.train.launch import EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED, launch, report_failure
from xnorlab.train.training import KeepEpoch, TrainConfig, train

LABEL = "xnorlab train"
MAX_PROCESSES = 4 * (os.cpu_count() or 1)
EXIT_USER_ERROR = 2


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
    if has_packed_layers(model):  # a packed layer has no float weights to binarize otherwise
        given = ["--modes"] * (args.modes is not None) + [
            f"--{k.replace('_', '-')}" for k in settings
        ]
        raise XnorlabError(
            f"{' and '.join(given)} cannot change a packed .xnor model: its layers keep the "
            "modes it was exported with (export the float model again to change them)"
        )
    try:
        binarize_model(model, args.modes or {}, warn_first_last=True, **settings)
    except ValueError as exc:
        if isinstance(exc, ModeMapError):
            raise
        raise XnorlabError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, "lenet (new), demo:lenet, resnet18:w.pth, f.pt")
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
    parser.add_argument(
        "--device",
        type=cli_args.device,
        default=None,
        help="cpu, cuda or cuda:N (default: cuda if present)",
    )
    parser.add_argument(
        "--nproc",
        type=cli_args.int_in(1, MAX_PROCESSES),
        default=1,
        metavar="N",
        help="train on N processes of this machine (DDP: gloo on CPU, nccl with a GPU each), "
        "with the results of one process and the same global --batch-size; across machines "
        "use torchrun (see README)",
    )
    parser.add_argument(
        "--dist-timeout",
        type=cli_args.float_in(*TIMEOUT_RANGE_S, what="timeout"),
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="several processes: how long a rank waits for the others (rank 0 evaluates "
        "alone after each epoch) before the run fails",
    )


def _fit_data(loaded: LoadedModel, bundle: DatasetBundle) -> tuple[nn.Module, list[str]]:
    """Match the data's classes to the model's; an untrained model is rebuilt for them."""
    untrained = loaded.card.get("trained") is False
    names = [n.lower() for n in loaded.class_names]
    fits = all(n.lower() in names for n in bundle.class_names)
    if fits or not untrained or not loaded.arch:
        return loaded.model, loaded.class_names
    return build_arch(loaded.arch, len(bundle.class_names)), list(bundle.class_names)


def run(args: argparse.Namespace) -> int:
    world = world_from_environ()
    _check_processes(args, world)
    if args.nproc > 1:
        return launch(_spawned_rank, args, args.nproc, label=LABEL)
    if world is not None and world.spread:
        return _run_rank(args, world)
    return _train(args, SINGLE, args.device)


def _check_processes(args: argparse.Namespace, world: World | None) -> None:
    """What --nproc cannot be combined with, before any process starts."""
    if args.nproc == 1:
        return
    if world is not None:
        raise XnorlabError(
            "--nproc starts its own processes; under torchrun leave it out "
            "(torchrun --nproc-per-node sets the count)"
        )
    check_batch(args.batch_size, args.nproc)
    last = args.nproc - 1
    placement(World(rank=last, size=args.nproc, local_rank=last), args.device)


def _spawned_rank(args: argparse.Namespace) -> int:
    """A worker that ``launch`` started (the environment names its rank)."""
    world = world_from_environ()
    assert world is not None, "launch sets RANK and WORLD_SIZE"
    warnings.showwarning = _one_line_warning
    return _run_rank(args, world)


def _one_line_warning(
    message: Warning | str, category: type[Warning], *_: object, **__: object
) -> None:
    print(f"xnorlab: warning: {message}", file=sys.stderr)


def _run_rank(args: argparse.Namespace, world: World) -> int:
    """Train as one rank; a failure becomes one reported line and an exit status."""
    if not world.is_main:
        warnings.simplefilter("ignore")  # rank 0 shows the same warnings once
    try:
        device, backend = placement(world, args.device)
        with process_group(world, backend, args.dist_timeout):
            try:
                return _train(args, world, str(device))
            except BaseException as exc:  # reported inside the group: peers' echoes come later
                return _report(exc, world)
    except BaseException as exc:  # no place or no group
        return _report(exc, world)


def _report(exc: BaseException, world: World) -> int:
    if isinstance(exc, SystemExit):
        raise exc
    if os.environ.get("XNORLAB_DEBUG"):
        traceback.print_exc()
    if isinstance(exc, XnorlabError):
        return report_failure(
            world.rank, EXIT_USER_ERROR, f"{LABEL}: error: rank {world.rank}: {exc}"
        )
    if isinstance(exc, KeyboardInterrupt):
        return report_failure(world.rank, EXIT_INTERRUPTED, f"{LABEL}: interrupted")
    detail = " ".join(str(exc).split())[:200]
    line = (
        f"{LABEL}: internal error: rank {world.rank}: {type(exc).__name__}: {detail} "
        "(rerun with XNORLAB_DEBUG=1 for the traceback)"
    )
    return report_failure(world.rank, EXIT_INTERNAL_ERROR, line)


def _train(args: argparse.Namespace, world: World, device: str | None) -> int:
    torch.manual_seed(args.seed)  # a new model's initial weights follow --seed too
    loaded = load_model(args, trust=args.trust)
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
        device=device,
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
    bar = ProgressBar() if world.is_main else None
    cancel = SigintCancel()
    try:
        result = train(model, bundle, config, bar, cancel, args.out, meta, world)
    finally:
        cancel.restore()
        if bar is not None:
            bar.close()
    if not world.is_main:
        return 0
    state = "cancelled" if result.cancelled else "done"
    figure = (
        "no split left to report on" if result.val is None else f"val top-1 {result.val.text()}"
    )
    ranks = f" on {world.size} processes" if world.spread else ""
    print(
        f"{state}: kept epoch {result.kept_epoch} ({result.card.get('kept', config.keep)}); "
        f"{figure}; {result.seconds:.1f} s{ranks}; checkpoint {result.checkpoint}"
    )
    return 0
