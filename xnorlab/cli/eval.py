"""``xnorlab eval MODEL [--modes ...] --data DATA [--split train|val|all] [--engine] [--json]``.

Prints what was evaluated (data, split, items per class), top-1 with its 95 % Wilson interval,
top-5, per-class accuracy with intervals and the confusion matrix (rows: true class, columns:
predicted class); ``--json`` prints them as one JSON object.

Which items: a folder is evaluated whole (every image under it) unless ``--split`` names a part
of it; a data set with a fixed split (mnist5k, digits, torchvision's) is evaluated on its val
split unless ``--split`` says otherwise, and the output says so. ``--max-items N`` draws a
seeded, class-stratified sample of N items. ``--engine`` runs the model as ``xnorlab.deploy``
prepares it (the XNOR engine, packed and fused), and the output says how the model ran.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from torch import nn

from xnorlab.binary.modes import Backend
from xnorlab.binary.surgery import current_modes
from xnorlab.cli import args as cli_args
from xnorlab.cli.common import add_model_arguments, load_model
from xnorlab.cli.progress import ProgressBar
from xnorlab.cli.train import add_mode_arguments, apply_modes
from xnorlab.common.errors import XnorlabError
from xnorlab.data.datasets import load_dataset
from xnorlab.data.sampling import SampleInfo
from xnorlab.measure.accuracy import draw_sample
from xnorlab.measure.evaluate import EvalResult, evaluate
from xnorlab.measure.intervals import Accuracy
from xnorlab.measure.machine import engine_model
from xnorlab.models.packed_layers import has_packed_layers
from xnorlab.runtime.deploy import deploy_report

SPLITS = ("train", "val", "all")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, "demo:lenet-xnor, resnet18:w.pth, f.pt")
    parser.add_argument(
        "--data",
        default=None,
        help="mnist5k, digits, mnist:ROOT, cifar10:ROOT, "
        "fashionmnist:ROOT or a folder (default: the model's data)",
    )
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default=None,
        help="which items: a folder is evaluated whole (all) by default, a data set with a "
        "fixed split on its val split",
    )
    parser.add_argument(
        "--max-items",
        type=cli_args.item_count,
        default=None,
        help="a seeded, class-stratified sample of this many items",
    )
    parser.add_argument("--batch-size", type=cli_args.batch_size, default=256)
    parser.add_argument(
        "--engine",
        action="store_true",
        help="run the binarized layers in the XNOR engine through xnorlab.deploy (packed, "
        "fused; the torch simulation's outputs up to float rounding, faster)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_mode_arguments(parser, None)


def choose_split(data_spec: str, asked: str | None) -> tuple[str, str]:
    """The split to evaluate and why: ``asked`` when given, else ``all`` for a folder (every
    image in it) and ``val`` for a data set with a fixed split."""
    if asked is not None:
        return asked, "as asked"
    if Path(data_spec).expanduser().is_dir():
        return "all", "the whole folder (--split train|val for a part)"
    return "val", "the data set's fixed val split (--split train|all for the others)"


def _engine_text(model: nn.Module, engine: bool) -> str:
    """How the model runs: the torch simulation, or what ``xnorlab.deploy`` did."""
    report = deploy_report(model)
    if engine and report is not None:
        return f"XNOR engine, {report.text()}"
    if has_packed_layers(model):
        return "packed .xnor layers in the XNOR engine"
    return "torch simulation (--engine: the XNOR engine through xnorlab.deploy)"


def _accuracy(result: EvalResult) -> Accuracy:
    hits = sum(result.confusion[i][i] for i in range(len(result.confusion)))
    return Accuracy(hits, result.count)


def _class_accuracies(result: EvalResult) -> dict[str, Accuracy]:
    return {
        name: Accuracy(row[i], sum(row))
        for i, (name, row) in enumerate(zip(result.class_names, result.confusion, strict=True))
    }


def _print_text(result: EvalResult, lines: list[str]) -> None:
    print("\n".join(lines))
    print(
        f"top-1 {_accuracy(result).text()}   top-5 {100 * result.top5:.2f} %   "
        f"loss {result.loss:.4f}"
    )
    print("per-class top-1:")
    for name, accuracy in _class_accuracies(result).items():
        print(f"  {name:<20} {accuracy.text()}")
    if len(result.class_names) <= 20:
        width = max(5, *(len(str(v)) for row in result.confusion for v in row)) + 1
        print("confusion (rows = true, columns = predicted):")
        print(" " * 12 + "".join(f"{n[: width - 1]:>{width}}" for n in result.class_names))
        for name, row in zip(result.class_names, result.confusion, strict=True):
            print(f"  {name[:9]:<10}" + "".join(f"{v:>{width}}" for v in row))


def _payload(
    args: argparse.Namespace, data_spec: str, split: str, why: str, info: SampleInfo,
    modes: dict[str, str], result: EvalResult,
) -> dict[str, Any]:  # fmt: skip
    return {
        "model": args.model,
        "data": data_spec,
        "split": split,
        "split_reason": why,
        "sample": info.to_json(),
        "modes": modes,
        "accuracy": _accuracy(result).to_json(),
        "per_class_accuracy": {k: v.to_json() for k, v in _class_accuracies(result).items()},
        **result.to_json(),
    }


def run(args: argparse.Namespace) -> int:
    loaded = load_model(args, trust=args.trust)
    apply_modes(loaded.model, args)
    data_spec = args.data or loaded.default_data
    if not data_spec:
        raise XnorlabError(f"give --data: {args.model} has no default data set")
    bundle = load_dataset(data_spec, loaded.preprocessing, loaded.class_names or None)
    split, why = choose_split(data_spec, args.split)
    dataset, info = draw_sample(bundle.split(split), args.max_items)
    model = engine_model(loaded.model, Backend.NATIVE if args.engine else Backend.TORCH)
    engine = _engine_text(model, args.engine)
    bar = ProgressBar()
    try:
        result = evaluate(
            model,
            dataset,
            bundle.class_names,
            args.batch_size,
            progress=None if args.json else bar,
        )
    finally:
        bar.close()
    modes = {name: str(mode) for name, mode in current_modes(loaded.model).items()}
    if args.json:
        payload = _payload(args, data_spec, split, why, info, modes, result)
        print(json.dumps({**payload, "engine": engine}, indent=2))
        return 0
    summary = ", ".join(f"{k}={v}" for k, v in modes.items()) or "no binarizable layers"
    what = "a stratified sample" if args.max_items is not None else "every item"
    _print_text(result, [
        f"model {args.model}; modes: {summary}",
        f"data {data_spec}, split {split}: {why}",
        f"evaluated {what}: {info.text(bundle.class_names)}",
        f"run: {engine}",
    ])  # fmt: skip
    return 0
