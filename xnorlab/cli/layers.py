"""``xnorlab layers MODEL``: list each binarizable layer with shape, params, MACs and mode."""

from __future__ import annotations

import argparse
import json

import torch

from xnorlab.binary.stats import NONNEGATIVE_INPUT_HINT, nonnegative_input_layers
from xnorlab.binary.surgery import (
    binarize_model,
    layer_macs,
    list_layers,
    unbinarizable_layers,
)
from xnorlab.cli.common import add_model_arguments, add_trust, load_model
from xnorlab.common.errors import XnorlabError
from xnorlab.data.calibration import calibration_batch
from xnorlab.models.loaded import LoadedModel


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, "resnet18, demo:lenet")
    parser.add_argument(
        "--modes", default="paper",
        help="preset (paper, paper-bwn, xnor, bwn, float) or a JSON mode file (default: paper)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_trust(parser)


def _probe_inputs(loaded: LoadedModel) -> torch.Tensor:
    """Real images where the model takes images (the bundled photos), else seeded noise."""
    try:
        return calibration_batch(loaded.input_shape, loaded.preprocessing)
    except XnorlabError:
        generator = torch.Generator().manual_seed(0)
        return torch.randn((4, *loaded.input_shape), generator=generator)


def run(args: argparse.Namespace) -> int:
    loaded = load_model(args, trust=args.trust)
    model = loaded.model.eval()
    binarize_model(model, args.modes)
    macs = layer_macs(model, loaded.input_shape)
    never_negative = set(nonnegative_input_layers(model, _probe_inputs(loaded)))
    rows = [
        {
            "name": info.name,
            "type": info.kind,
            "weight_shape": list(info.weight_shape),
            "params": info.params,
            "macs": macs.get(info.name, 0),
            "mode": str(info.mode),
            "input_never_negative": info.name in never_negative,
        }
        for info in list_layers(model)
    ]
    fixed = unbinarizable_layers(model)
    if args.json:
        payload = {
            "model": args.model,
            "input_shape": list(loaded.input_shape),
            "layers": rows,
            "not_binarizable": fixed,
        }
        print(json.dumps(payload, indent=2))
        return 0
    print(f"{args.model}: {len(rows)} binarizable layers, MACs for input {loaded.input_shape}")
    header = f"{'name':<32} {'type':<7} {'weight shape':<20} {'params':>10} {'MACs':>14} mode"
    flagged = [r["name"] for r in rows if r["input_never_negative"] and r["mode"] == "xnor"]
    print(header)
    print("-" * len(header))
    for row in rows:
        shape = "x".join(str(d) for d in row["weight_shape"])
        print(
            f"{row['name']:<32} {row['type']:<7} {shape:<20} {row['params']:>10,} "
            f"{row['macs']:>14,} {row['mode']}"
            + ("  (!) input >= 0" if row["name"] in flagged else "")
        )
    if flagged:
        print(f"(!) {len(flagged)} XNOR layer(s): {NONNEGATIVE_INPUT_HINT}")
    _print_unbinarizable(fixed)
    return 0


def _print_unbinarizable(fixed: dict[str, str]) -> None:
    """One line per reason: which Conv2d/Linear layers stay float whatever the modes say."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in fixed.items():
        by_reason.setdefault(reason, []).append(name)
    for reason, names in by_reason.items():
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        print(f"stays float ({len(names)}): {shown}: {reason}")
