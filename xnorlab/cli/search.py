"""``xnorlab search MODEL --data D --budget POINTS``: which layers to binarize, and how.

Proposes per-layer modes (float / BWN / XNOR) that keep top-1 within ``--budget`` percentage
points of the float model on a score split while minimizing the latency measured through the
engine (or the packed memory, ``--objective memory``); the chosen point is confirmed on a
second split that chose nothing (``xnorlab.search.walk``). A data set with a fixed split is
searched on its val split (held out from training; ``--finetune-epochs`` trains on its train
split); ``--data photos`` uses seeded crops of the bundled photos, unlabelled: top-1 then counts
agreement with the float model. Prints the float point, the Pareto front and the chosen point;
``--json`` prints ``SearchResult.to_json``; ``--out`` writes the chosen modes as a mode file
for ``--modes``; ``--save-model`` (with ``--finetune-epochs``) the chosen modes with their
fine-tuned weights as a checkpoint. A chosen point that loses more than the budget on the
confirm split is said in one line. Ctrl-C cancels: one line, exit 130, nothing written.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch
from torch.utils.data import Dataset

from xnorlab.binary.surgery import binarize_model, copy_model, mode_map_text
from xnorlab.cli import args as cli_args
from xnorlab.cli.common import (
    add_layer_settings,
    add_model_arguments,
    add_trust,
    layer_settings,
    load_model,
)
from xnorlab.cli.progress import ProgressBar
from xnorlab.common.atomic import atomic_write_text
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import Cancelled, SigintCancel
from xnorlab.data.calibration import PhotoCrops
from xnorlab.data.datasets import load_dataset, match_classes
from xnorlab.measure.front import FrontPoint, Objective, SearchResult, modes_letters
from xnorlab.measure.intervals import Accuracy
from xnorlab.measure.machine import load_note, set_threads
from xnorlab.models.checkpoint import save_checkpoint
from xnorlab.models.loaded import LoadedModel
from xnorlab.search.finetune import FINETUNE_LR, finetuned_meta
from xnorlab.search.walk import SearchOptions, search_modes

PHOTOS = "photos"
# Candidates are timed at batch 1, where one thread gives the steadiest ratios; on a shared
# machine a second thread mostly waits for the first.
SEARCH_THREADS = 1
EXIT_INTERRUPTED = 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, "demo:lenet, resnet18, model.pt")
    parser.add_argument(
        "--data",
        default=None,
        help="mnist5k, digits, mnist:ROOT, cifar10:ROOT, fashionmnist:ROOT, a folder, or "
        f"'{PHOTOS}' (crops of the bundled photos, unlabelled: top-1 agreement with float) "
        "(default: the model's data)",
    )
    parser.add_argument(
        "--budget",
        required=True,
        type=cli_args.float_in(0.0, 100.0, what="budget"),
        metavar="POINTS",
        help="top-1 percentage points the chosen modes may lose against float (score split)",
    )
    parser.add_argument(
        "--objective",
        choices=[o.value for o in Objective],
        default=Objective.LATENCY.value,
        help="what to minimize within the budget: measured latency (default) or packed memory",
    )
    parser.add_argument(
        "--finetune-epochs",
        type=cli_args.int_in(0, cli_args.MAX_EPOCHS),
        default=0,
        metavar="N",
        help="train the chosen modes N epochs (train split) before confirming them",
    )
    parser.add_argument(
        "--save-model",
        type=cli_args.output_file((".pt",)),
        default=None,
        metavar="FILE.pt",
        help="with --finetune-epochs: write the chosen modes with their fine-tuned weights as "
        "a checkpoint (as train --out; its card says which search made it)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--out",
        type=cli_args.output_file((".json",)),
        default=None,
        help="write the chosen modes as a JSON mode file (for --modes of layers/eval/train)",
    )
    parser.add_argument(
        "--threads",
        type=cli_args.threads,
        default=SEARCH_THREADS,
        help=f"threads for torch and engine (default {SEARCH_THREADS}: batch-1 timing is "
        "steadiest on one, and on a shared machine a second thread mostly waits)",
    )
    parser.add_argument(
        "--seed",
        type=cli_args.int_in(0, 2**31 - 1),
        default=0,
        help="seed of both splits, a new model's weights and a fine-tune (0)",
    )
    parser.add_argument(
        "--max-items",
        type=cli_args.item_count,
        default=1000,
        metavar="N",
        help="items per split, score and confirm (1000; fewer data are shared half and half)",
    )
    add_layer_settings(parser, weight_grad=False)
    add_trust(parser)


def search_data(
    loaded: LoadedModel, spec: str | None
) -> tuple[str, Dataset[Any], Dataset[Any] | None]:
    """``(description, items searched, items a fine-tune trains on)`` of ``--data``."""
    name = spec or loaded.default_data
    if not name:
        raise XnorlabError(
            f"give --data: {loaded.spec} has no default data set ('{PHOTOS}' for the bundled photos)"
        )
    if name.strip().lower() == PHOTOS:
        crops = PhotoCrops(loaded.input_shape, loaded.preprocessing)
        return f"{len(crops)} crops of the bundled photos (unlabelled)", crops, None
    bundle = load_dataset(name, loaded.preprocessing, loaded.class_names or None)
    bundle = match_classes(bundle, loaded.class_names) if loaded.class_names else bundle
    return f"{bundle.name} (val split)", bundle.val, bundle.train


def _ms(point: FrontPoint) -> str:
    low, high = point.latency_interval_ms
    return f"{point.latency_ms:.3g} [{low:.3g}, {high:.3g}]"


def _row(point: FrontPoint) -> str:
    return f"  {modes_letters(point.modes):<{max(5, len(point.modes))}}  {point.accuracy.text():<32}  {_ms(point):<24}  {point.memory_bytes:>12,}"


def _acc(accuracy: Accuracy | None) -> str:
    return "-" if accuracy is None else accuracy.text()


def result_text(result: SearchResult, what: str) -> str:
    """The float point, the front as a table, the chosen point and its confirmation."""
    floats = result.float_point
    metric = "top-1" if str(result.metric) == "top1" else "top-1 agreement with float"
    width = max(5, len(floats.modes))
    lines = [
        f"searched {what}: budget {result.budget_points:g} pts of {metric}, objective {result.objective}",
        f"score split {result.score_sample.text()}; confirm split {result.confirm_sample.text()}",
        f"layers (one letter each below, F float, B BWN, X XNOR): {', '.join(floats.modes)}",
        f"float: {metric} {floats.accuracy.text()}, latency {_ms(floats)} ms, memory {floats.memory_bytes:,} B",
        f"Pareto front ({len(result.front)} of {result.evaluated} configurations measured; score split):",
        f"  {'modes':<{width}}  {metric[:5]:<32}  {'latency ms [95 %]':<24}  {'memory B':>12}",
        *(_row(point) for point in result.front),
    ]
    chosen = result.chosen
    if chosen is None:
        lines.append(
            f"chosen: nothing binarized beats float on {result.objective} within {result.budget_points:g} pts"
        )
        return "\n".join(lines)
    speedup = floats.latency_ms / chosen.latency_ms
    tuned = (
        f" after {result.finetune_epochs} fine-tune epochs (train split)"
        if result.finetune_epochs
        else ""
    )
    lines += [
        f"chosen: {modes_letters(chosen.modes)} ({chosen.binary_layers} of {len(chosen.modes)} layers binary): "
        f"score {chosen.accuracy.text()}, latency {_ms(chosen)} ms ({speedup:.2f}x float), memory {chosen.memory_bytes:,} B",
        f"confirm split (chose nothing){tuned}: chosen {_acc(result.confirm_accuracy)}, float {_acc(result.confirm_float)}",
    ]
    over = over_budget_text(result)
    if over:
        lines.append(over)
    return "\n".join(lines)


def over_budget_text(result: SearchResult) -> str:
    """One line when the chosen point loses more than the budget on the confirm split."""
    lost = result.over_budget_points
    if lost is None:
        return ""
    more = "more --finetune-epochs" if result.finetune_epochs else "--finetune-epochs 3"
    return (
        f"warning: on the confirm split the chosen modes lose {lost:.1f} pts against float, "
        f"more than the {result.budget_points:g}-point budget: try {more}, a larger "
        "--max-items or a smaller budget"
    )


def run_search(
    loaded: LoadedModel, data_spec: str | None, options: SearchOptions, settings: dict[str, str],
    bar: ProgressBar,
) -> tuple[SearchResult, str]:  # fmt: skip
    """Search ``loaded``'s model (a float-wrapped copy with the layer ``settings``) on
    ``data_spec``; Ctrl-C cancels (raises ``Cancelled``). The result and what was searched."""
    model = copy_model(loaded.model, share_tensors=True)
    binarize_model(model, "float", warn_first_last=False, **settings)
    what, dataset, train_items = search_data(loaded, data_spec)
    cancel = SigintCancel()

    def progress(fraction: float, message: str = "", payload: Any = None, /) -> None:
        bar(fraction, message)

    try:
        result = search_modes(model, dataset, options, progress=progress, should_cancel=cancel,
                              finetune_data=train_items)  # fmt: skip
    finally:
        cancel.restore()
    return result, f"{loaded.spec} on {what}"


def cancelled(command: str) -> int:
    """The one line and exit status of a search cancelled with Ctrl-C."""
    print(f"xnorlab {command}: cancelled; nothing written", file=sys.stderr)
    return EXIT_INTERRUPTED


def check_arguments(args: argparse.Namespace) -> None:
    """What the arguments cannot ask together, before any work."""
    if args.save_model is not None and not args.finetune_epochs:
        raise XnorlabError(
            "--save-model keeps the fine-tuned weights: give --finetune-epochs N (N > 0) too "
            "(without a fine-tune the weights are the model's own: --out writes the modes)"
        )


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    set_threads(args.threads)
    torch.manual_seed(args.seed)  # a model without weights (resnet18) is the same each run
    loaded = load_model(args, trust=args.trust)
    options = SearchOptions(
        budget_points=args.budget,
        objective=Objective.parse(args.objective),
        finetune_epochs=args.finetune_epochs,
        score_items=args.max_items,
        confirm_items=args.max_items,
        seed=args.seed,
    )
    bar = ProgressBar()  # on stderr: --json output stays clean
    try:
        result, what = run_search(loaded, args.data, options, layer_settings(args), bar)
    except Cancelled:
        bar.close()
        return cancelled("search")
    finally:
        bar.close()
    if args.out is not None and result.chosen is not None:
        atomic_write_text(args.out, mode_map_text(result.chosen.modes))
    if args.save_model is not None and result.finetuned_model is not None:
        data = args.data or loaded.default_data or ""
        meta = finetuned_meta(loaded, result, result.finetuned_model, data)
        save_checkpoint(args.save_model, result.finetuned_model, meta)
    print(json.dumps(result.to_json(), indent=2) if args.json else result_text(result, what))
    if not args.json:
        print("\n".join(_notes(args, result)))
    return 0


def _notes(args: argparse.Namespace, result: SearchResult) -> list[str]:
    """What was written, how to keep fine-tuned weights, and a busy machine's warning."""
    notes = []
    if args.out is not None:
        written = result.chosen is not None
        notes.append(f"wrote {args.out}" if written else f"nothing chosen: {args.out} not written")
    if args.save_model is not None:
        saved = result.finetuned_model is not None
        notes.append(
            f"wrote {args.save_model} (the chosen modes, fine-tuned weights)"
            if saved
            else f"nothing chosen: {args.save_model} not written"
        )
    elif result.finetune_epochs:
        # train with the same recipe, seed, items and threads runs the same fine-tune (keep=last)
        modes = str(args.out) if args.out is not None else "MODES.json (--out)"
        settings = "".join(
            f" --{key.replace('_', '-')} {value}" for key, value in layer_settings(args).items()
        )
        data = f" --data {args.data}" if args.data else ""
        notes.append(
            f"the fine-tuned weights are not kept (--save-model FILE.pt keeps them); the same "
            "run that keeps them: "
            f"OMP_NUM_THREADS={args.threads} xnorlab train {args.model}{data} --modes {modes}"
            f"{settings} --epochs {result.finetune_epochs} --lr {FINETUNE_LR:g} "
            f"--seed {args.seed} --out FILE.pt"
        )
    note = load_note()
    if note:
        notes.append(f"note: {note}")
    return notes
