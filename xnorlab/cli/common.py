"""Options shared by several subcommands: the model and its code options, layer settings, the
pickle trust switch."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from xnorlab.binary.modes import InputScaling, PadMode, WeightGrad
from xnorlab.common.errors import XnorlabError, quoted
from xnorlab.models.loaded import LoadedModel
from xnorlab.models.spec import code_spec_of, load_model_spec
from xnorlab.models.user_code import (
    CodeOptions,
    parse_arch_kwargs,
    parse_input_shape,
    read_class_names,
)

CODE_FLAGS = {
    "weights": "--weights",
    "arch_kwargs": "--arch-kwargs",
    "input_shape": "--input-shape",
    "class_names": "--class-names",
}
CODE_HELP = (
    "FILE.py:Class or package.module:Class imports and runs that Python code to build the "
    "model: your explicit choice, so name only code you trust. These options apply to it only."
)


def _checked(parse: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """An argparse type from a parser that raises ``XnorlabError``: one usage line, exit 2."""

    def check(text: str) -> Any:
        try:
            return parse(text)
        except XnorlabError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    check.__name__ = name
    return check


def add_model_arguments(parser: argparse.ArgumentParser, examples: str) -> None:
    """The ``model`` spec (``examples`` shows a few) and the options of the user's own code:
    ``--weights``, ``--arch-kwargs``, ``--input-shape``, ``--class-names``."""
    parser.add_argument(
        "model",
        help=f"model spec, e.g. {examples}, or your own code as FILE.py:Class or "
        "package.module:Class (imports and runs it: see 'your own model code')",
    )
    group = parser.add_argument_group("your own model code", CODE_HELP)
    group.add_argument(
        "--weights",
        metavar="FILE",
        help="weights for the class: a state_dict (.pt/.pth, read with weights_only=True, or "
        ".safetensors), a checkpoint of xnorlab's or a .xnor export of the same class",
    )
    group.add_argument(
        "--arch-kwargs",
        metavar="JSON",
        type=_checked(parse_arch_kwargs, "JSON"),
        help="keyword arguments of the class's constructor as a JSON object, e.g. '{\"width\": 64}'",
    )
    group.add_argument(
        "--input-shape",
        metavar="C,H,W",
        type=_checked(parse_input_shape, "C,H,W"),
        help="one input's shape, e.g. 1,28,28 (default: the class's input_shape attribute, "
        "else the weights' metadata)",
    )
    group.add_argument(
        "--class-names",
        metavar="FILE",
        type=_checked(read_class_names, "class names file"),
        help="class names, one per line (or a .json list); default: the weights' metadata, "
        "else the numbers 0..K-1",
    )


def code_options(args: argparse.Namespace, weights: str | None = None) -> CodeOptions:
    """The code options given on the command line (``weights`` replaces ``--weights``)."""
    return CodeOptions(
        weights=weights or args.weights,
        arch_kwargs=args.arch_kwargs or {},
        input_shape=args.input_shape,
        class_names=args.class_names,
    )


def load_model(
    args: argparse.Namespace, trust: bool = False, weights: str | None = None
) -> LoadedModel:
    """The model of ``args.model`` with the code options (see ``add_model_arguments``);
    ``weights`` replaces ``--weights`` (e.g. to reopen an export)."""
    options = code_options(args, weights)
    if options.given() and code_spec_of(args.model) is None:
        flags = ", ".join(CODE_FLAGS[name] for name in options.given())
        raise XnorlabError(
            f"{flags}: for your own code only (FILE.py:Class or package.module:Class), "
            f"not for {quoted(args.model)}"
        )
    return load_model_spec(args.model, trust=trust, code=options)


def add_layer_settings(parser: argparse.ArgumentParser, *, weight_grad: bool = True) -> None:
    """``--scaling``, ``--pad-mode`` (and ``--weight-grad`` for training) for every layer."""
    parser.add_argument(
        "--scaling",
        choices=[m.value for m in InputScaling],
        help="input scaling of every XNOR layer (default: the model's)",
    )
    parser.add_argument(
        "--pad-mode",
        choices=[m.value for m in PadMode],
        help="padding of binary inputs (default: the model's)",
    )
    if weight_grad:
        parser.add_argument(
            "--weight-grad",
            choices=[m.value for m in WeightGrad],
            help="BWN weight gradient: paper (eq. 5) or ste",
        )


def add_trust(parser: argparse.ArgumentParser) -> None:
    """``--trust``: allow whole pickled models (off by default: a pickle can run code)."""
    parser.add_argument(
        "--trust",
        action="store_true",
        help="allow whole pickled models (they can run code when loaded: trusted files only)",
    )


def layer_settings(args: argparse.Namespace) -> dict[str, str]:
    """The layer settings given on the command line, as ``LayerConfig`` field -> value."""
    pairs = (
        ("scaling", getattr(args, "scaling", None)),
        ("pad_mode", getattr(args, "pad_mode", None)),
        ("weight_grad", getattr(args, "weight_grad", None)),
    )
    return {key: value for key, value in pairs if value is not None}
