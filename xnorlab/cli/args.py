"""Argument types for the subcommands: each checks its value when argparse reads it, so a bad
value ends in argparse's one usage line (exit 2) before any model is loaded or work done."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from xnorlab.common.errors import XnorlabError
from xnorlab.common.files import check_output_path

MAX_THREADS = 256
MAX_BATCH = 1 << 16
MAX_ITEMS = 1 << 31
MAX_EPOCHS = 10_000


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An ``int`` type accepting ``low <= value <= high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    parse.__name__ = "int"  # argparse names the type in its messages
    return parse


def float_in(
    low: float, high: float, *, low_open: bool = False, what: str = "value"
) -> Callable[[str], float]:
    """A finite ``float`` type accepting ``low <= value <= high`` (``low < value`` if open)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        below = value <= low if low_open else value < low
        if not math.isfinite(value) or below or value > high:
            bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
            raise argparse.ArgumentTypeError(f"{what} {text} is outside {bound}")
        return value

    parse.__name__ = "float"
    return parse


def output_file(suffixes: Sequence[str] | None = None) -> Callable[[str], Path]:
    """An output path type: writable folder, nothing but a file at the path, allowed suffix."""

    def parse(text: str) -> Path:
        try:
            return check_output_path(text, suffixes=suffixes)
        except XnorlabError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = "output path"
    return parse


def device(text: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``, and only a GPU this machine has."""
    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not a device (cpu, cuda, cuda:N)"
        ) from None
    if parsed.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"device {text!r}: use cpu, cuda or cuda:N")
    if parsed.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0 or (parsed.index or 0) >= count:
            raise argparse.ArgumentTypeError(f"device {text!r}: this machine has {count} GPU(s)")
    return text


threads = int_in(1, MAX_THREADS)
batch_size = int_in(1, MAX_BATCH)
item_count = int_in(1, MAX_ITEMS)
epochs = int_in(1, MAX_EPOCHS)
