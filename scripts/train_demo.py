"""Reproduce the shipped demo checkpoints and their honest accuracy figures.

    .venv/bin/python scripts/train_demo.py [--only float|bwn|xnor] [--out DIR]

One recipe for three LeNet variants: float, BWN (``paper-bwn``) and XNOR (``paper``: K-map input
scaling, zero padding, the paper's weight gradient). The recipe is ``TrainConfig()``'s defaults,
so ``xnorlab train lenet --data mnist5k --modes paper --out x.pt`` runs the same thing.

Each variant trains on mnist5k's 4,000-digit training split for a number of epochs fixed in
advance and keeps the last epoch: nothing is selected. The 1,000 held-out digits (stratified,
seeded) chose nothing (no epoch, no hyper-parameter), so the kept weights' accuracy on them,
with its 95 % Wilson interval, is an honest estimate of accuracy on unseen digits. The shipped
model is exactly the model that was scored; the app's and ``eval``'s mnist5k figures stay
held-out figures because the model never saw those 1,000 digits.

The card ``lenet-<variant>.json`` holds the recipe, the held-out accuracy (hits, n, interval),
the history and times, and versions. Runs with ``torch.set_num_threads(2)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from xnorlab.binary.surgery import binarize_model
from xnorlab.cli.progress import ProgressBar
from xnorlab.data.bundle import DatasetBundle
from xnorlab.data.datasets import load_dataset
from xnorlab.measure.intervals import Accuracy
from xnorlab.models.demo import build_demo
from xnorlab.models.spec import CHECKPOINT_DIR
from xnorlab.train.training import TrainConfig, train

RECIPE = TrainConfig()
VARIANTS = {"float": "float", "bwn": "paper-bwn", "xnor": "paper"}
PROTOCOL = (
    "trained on mnist5k's 4,000-digit training split, last of a fixed number of epochs; "
    "scored on the 1,000 held-out digits, which chose nothing"
)


def _model(variant: str) -> torch.nn.Module:
    torch.manual_seed(RECIPE.seed)
    model = build_demo("lenet")
    binarize_model(model, VARIANTS[variant], scaling="kmap", pad_mode="zero", weight_grad="paper")
    return model


def train_variant(variant: str, bundle: DatasetBundle, out_dir: Path) -> dict[str, Any]:
    """Train one variant, write its checkpoint and card; returns the card."""
    meta = {
        "arch": "lenet",
        "num_classes": 10,
        "class_names": bundle.class_names,
        "preprocessing": bundle.preprocessing.to_json(),
        "default_data": "mnist5k",
        "card": {
            "variant": variant,
            "preset": VARIANTS[variant],
            "command": "python scripts/train_demo.py",
            "torch_threads": torch.get_num_threads(),
            "protocol": PROTOCOL,
        },
    }
    path = out_dir / f"lenet-{variant}.pt"
    bar = ProgressBar()
    try:
        result = train(_model(variant), bundle, RECIPE, bar, None, path, meta)
    finally:
        bar.close()
    card = result.card
    (out_dir / f"lenet-{variant}.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(VARIANTS), action="append")
    parser.add_argument("--out", type=Path, default=CHECKPOINT_DIR)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    bundle = load_dataset("mnist5k")
    for variant in args.only or list(VARIANTS):
        card = train_variant(variant, bundle, args.out)
        held_out = Accuracy(
            hits=round(card["val_accuracy"] * card["val_items"]), n=card["val_items"]
        )
        print(
            f"lenet-{variant}: held-out {held_out.text()}, {card['training_seconds']} s "
            f"({card['cpu_seconds']} s CPU)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
