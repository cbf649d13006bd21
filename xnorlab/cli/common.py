"""Options shared by several subcommands: layer settings, the pickle trust switch."""

from __future__ import annotations

import argparse

from xnorlab.binary.modes import InputScaling, PadMode, WeightGrad


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
