"""``xnorlab export MODEL --modes ... --out FILE.xnor``: the compact packed-model file."""

from __future__ import annotations

import argparse

from xnorlab.binary.surgery import binarize_model
from xnorlab.cli import args as cli_args
from xnorlab.cli.common import (
    add_layer_settings,
    add_model_arguments,
    add_trust,
    layer_settings,
    load_model,
)
from xnorlab.measure.memory import state_dict_file_bytes
from xnorlab.models.loaded import LoadedModel
from xnorlab.models.spec import code_spec_of
from xnorlab.models.xnor_file import SUFFIX, export_xnor, load_xnor
from xnorlab.report.render.format import file_size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, "demo:lenet-xnor, resnet18, model.pt")
    parser.add_argument(
        "--modes", default=None,
        help="preset (paper, paper-bwn, xnor, bwn, float) or a JSON mode file "
        "(default: the modes stored with the model, else paper)",
    )  # fmt: skip
    parser.add_argument(
        "--out", required=True, type=cli_args.output_file((SUFFIX,)),
        help=f"output file, must end in {SUFFIX}",
    )  # fmt: skip
    add_layer_settings(parser, weight_grad=False)
    add_trust(parser)
    parser.add_argument("--no-verify", action="store_true",
                        help="skip re-opening the written file to check it")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    loaded = load_model(args, trust=args.trust)
    model = loaded.model
    modes = args.modes or (loaded.modes if loaded.modes else "paper")
    settings = layer_settings(args)
    applied = binarize_model(model, modes, **settings)
    size = export_xnor(model, args.out, loaded)
    float_size = state_dict_file_bytes(model)
    binary = sum(1 for mode in applied.values() if str(mode) != "float")
    print(
        f"wrote {args.out}: {file_size(size)} ({binary} of {len(applied)} layers packed), "
        f"float state_dict {file_size(float_size)}: {float_size / size:.2f}x smaller"
    )
    if not args.no_verify:
        reopened = reopen(args)
        routes = sorted({getattr(m, "route", "") for m in reopened.model.modules()} - {""})
        print(f"verified: the file opens; packed layers run via {', '.join(routes) or '-'}")
    return 0


def reopen(args: argparse.Namespace) -> LoadedModel:
    """The written file opened again; the user's own class opens it as its weights (a .xnor
    file never makes xnorlab import code)."""
    if code_spec_of(args.model) is not None:
        return load_model(args, weights=str(args.out))
    return load_xnor(args.out)
