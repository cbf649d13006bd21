"""``xnorlab eval MODEL [--modes ...] --data DATA [--split val] [--json]``.

Prints top-1, top-5, per-class accuracy and the confusion matrix (rows: true class, columns:
predicted class); ``--json`` prints them as one JSON object.
"""

from __future__ import annotations

import argparse
import json

from xnorlab.binary.surgery import current_modes
from xnorlab.cli.progress import ProgressBar
from xnorlab.cli.train import add_mode_arguments, apply_modes
from xnorlab.common.errors import XnorlabError
from xnorlab.data.datasets import load_dataset, subset
from xnorlab.measure.evaluate import EvalResult, evaluate
from xnorlab.models.spec import load_model_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model spec, e.g. demo:lenet-xnor, resnet18:w.pth, f.pt")
    parser.add_argument(
        "--data",
        default=None,
        help="mnist5k, digits, mnist:ROOT, cifar10:ROOT, "
        "fashionmnist:ROOT or a folder (default: the model's data)",
    )
    parser.add_argument("--split", choices=["val", "train", "all"], default="val")
    parser.add_argument("--max-items", type=int, default=None, help="a seeded random subset")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_mode_arguments(parser, None)


def _print_text(result: EvalResult, header: str) -> None:
    print(header)
    print(
        f"top-1 {result.top1:.4f}   top-5 {result.top5:.4f}   loss {result.loss:.4f}   "
        f"n={result.count}"
    )
    print("per-class top-1:")
    for name, acc in result.per_class.items():
        print(f"  {name:<20} {acc:.4f}")
    if len(result.class_names) <= 20:
        width = max(5, *(len(str(v)) for row in result.confusion for v in row)) + 1
        print("confusion (rows = true, columns = predicted):")
        print(" " * 12 + "".join(f"{n[: width - 1]:>{width}}" for n in result.class_names))
        for name, row in zip(result.class_names, result.confusion, strict=True):
            print(f"  {name[:9]:<10}" + "".join(f"{v:>{width}}" for v in row))


def run(args: argparse.Namespace) -> int:
    loaded = load_model_spec(args.model, trust=args.trust)
    apply_modes(loaded.model, args)
    data_spec = args.data or loaded.default_data
    if not data_spec:
        raise XnorlabError(f"give --data: {args.model} has no default data set")
    bundle = load_dataset(data_spec, loaded.preprocessing, loaded.class_names or None)
    dataset = bundle.split(args.split)
    if args.max_items is not None:
        dataset = subset(dataset, args.max_items)
    bar = ProgressBar()
    try:
        result = evaluate(
            loaded.model,
            dataset,
            bundle.class_names,
            args.batch_size,
            progress=None if args.json else bar,
        )
    finally:
        bar.close()
    modes = {name: str(mode) for name, mode in current_modes(loaded.model).items()}
    if args.json:
        payload = {
            "model": args.model,
            "data": data_spec,
            "split": args.split,
            "modes": modes,
            **result.to_json(),
        }
        print(json.dumps(payload, indent=2))
        return 0
    summary = ", ".join(f"{k}={v}" for k, v in modes.items()) or "no binarizable layers"
    _print_text(result, f"{args.model} on {data_spec} ({args.split}); modes: {summary}")
    return 0
