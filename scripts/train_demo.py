"""Reproduce the shipped demo checkpoints (the one documented command).

    .venv/bin/python scripts/train_demo.py [--only float|bwn|xnor] [--out DIR]

Trains the LeNet demo from scratch on mnist5k's training split (4,000 digits) three times with
one recipe (``RECIPE``): float, BWN (``paper-bwn`` preset) and XNOR (``paper`` preset, K-map
input scaling, zero padding, the paper's weight gradient). Each run keeps the weights of its
best validation epoch and writes ``lenet-<variant>.pt`` plus a JSON card ``lenet-<variant>.json``
(recipe, seed, epochs, val accuracy, training time, date, versions) into
``xnorlab/resources/checkpoints``. Runs with ``torch.set_num_threads(2)``; training times in
the cards are wall-clock on the machine that ran it (noisy when other jobs share the CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from xnorlab.binary.surgery import binarize_model
from xnorlab.cli.progress import ProgressBar
from xnorlab.data.datasets import load_dataset
from xnorlab.models.demo import build_demo
from xnorlab.models.spec import CHECKPOINT_DIR
from xnorlab.train.training import TrainConfig, train

RECIPE = TrainConfig(
    epochs=30, batch_size=64, lr=2e-3, seed=0, shift_px=2.0, rotate_deg=10.0, scale=0.1
)
VARIANTS = {"float": "float", "bwn": "paper-bwn", "xnor": "paper"}


def train_variant(variant: str, out_dir: Path) -> dict[str, object]:
    """Train one demo variant and write its checkpoint and card; returns the card."""
    bundle = load_dataset("mnist5k")
    torch.manual_seed(RECIPE.seed)
    model = build_demo("lenet")
    binarize_model(model, VARIANTS[variant], scaling="kmap", pad_mode="zero", weight_grad="paper")
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
        },
    }
    path = out_dir / f"lenet-{variant}.pt"
    bar = ProgressBar()
    result = train(model, bundle, RECIPE, bar, None, path, meta)
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
    for variant in args.only or list(VARIANTS):
        card = train_variant(variant, args.out)
        print(
            f"lenet-{variant}: best val top-1 {card['val_accuracy']:.4f} "
            f"(epoch {card['best_epoch']}/{card['epochs']}), {card['training_seconds']} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
