"""``xnorlab predict MODEL IMAGE... [--modes ...] [--topk K] [--json]``.

Each image (any format and mode Pillow reads, any size) is converted to the model's input
(``xnorlab.data.images``) and classified; prints the top-K classes with probabilities.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

import torch

from xnorlab.cli import args as cli_args
from xnorlab.cli.common import add_model_arguments, load_model
from xnorlab.cli.train import add_mode_arguments, apply_modes
from xnorlab.common.errors import XnorlabError
from xnorlab.data.images import load_image
from xnorlab.models.loaded import LoadedModel
from xnorlab.models.spec import code_spec_of
from xnorlab.models.user_code import plain_preprocessing


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, "demo:lenet-xnor, f.pt")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument(
        "--topk", type=cli_args.int_in(1, 1000), default=3, help="classes to show per image"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_mode_arguments(parser, None)


def predict_images(loaded: LoadedModel, paths: list[str], topk: int) -> list[dict[str, Any]]:
    """Top-``topk`` (class, probability) of each image, most likely first."""
    if loaded.preprocessing is None:
        raise XnorlabError(f"{loaded.spec} does not say what input it expects")
    batch = torch.stack([load_image(path, loaded.preprocessing) for path in paths])
    loaded.model.eval()
    with torch.no_grad():
        probs = torch.softmax(loaded.model(batch).float(), dim=1)
    names = loaded.class_names or [str(i) for i in range(probs.shape[1])]
    if len(names) != probs.shape[1]:
        raise XnorlabError(
            f"{loaded.spec} names {len(names)} classes but its output has {probs.shape[1]}"
        )
    k = max(1, min(topk, probs.shape[1]))
    values, indices = probs.topk(k, dim=1)
    return [
        {
            "image": path,
            "top": [
                {"class": names[int(i)], "index": int(i), "probability": float(p)}
                for p, i in zip(vals, idxs, strict=True)
            ],
        }
        for path, vals, idxs in zip(paths, values, indices, strict=True)
    ]


def run(args: argparse.Namespace) -> int:
    loaded = load_model(args, trust=args.trust)
    if loaded.preprocessing is None and code_spec_of(args.model) is not None:
        loaded = replace(loaded, preprocessing=plain_preprocessing(loaded.input_shape))
        shape = "x".join(str(side) for side in loaded.input_shape[1:])
        print(f"xnorlab predict: {args.model} names no preprocessing: images become pixels in "
              f"[0, 1] at {shape}", file=sys.stderr)  # fmt: skip
    apply_modes(loaded.model, args)
    results = predict_images(loaded, list(args.images), args.topk)
    if args.json:
        print(json.dumps({"model": args.model, "predictions": results}, indent=2))
        return 0
    for item in results:
        ranked = "  ".join(f"{t['class']} {t['probability']:.1%}" for t in item["top"])
        print(f"{item['image']}: {ranked}")
    return 0
