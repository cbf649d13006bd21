"""``xnorlab`` entry point: no subcommand opens the app; subcommands run headless.

Each subcommand lives in its own module ``xnorlab.cli.<name>`` with ``add_arguments(parser)``
and ``run(args) -> int``. User errors (``XnorlabError``) print one line and exit with 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import NoReturn

from xnorlab._version import __version__
from xnorlab.cli.display import prepare_display
from xnorlab.common.errors import XnorlabError, quoted
from xnorlab.common.files import check_output_path, existing

# name -> (module, one-line help). A command's module is imported only when it runs, so one
# command does not pay for loading the stacks of all the others.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "layers": ("xnorlab.cli.layers", "list the binarizable layers of a model and their modes"),
    "report": ("xnorlab.cli.report", "per-layer binarization report (html, json, csv, md)"),
    "export": ("xnorlab.cli.export", "write the compact packed model file (.xnor)"),
    "bench": ("xnorlab.cli.bench", "time the XNOR engine against torch float32 and int8"),
    "train": ("xnorlab.cli.train", "train or fine-tune a model in a mode map (paper-style STE)"),
    "eval": ("xnorlab.cli.eval", "top-1/top-5, per-class accuracy and confusion matrix on data"),
    "predict": ("xnorlab.cli.predict", "classify image files (any format, any size)"),
    "search": ("xnorlab.cli.search", "which layers to binarize: modes within a top-1 budget"),
    "ensemble": ("xnorlab.cli.ensemble", "train K binary members and compare with a float net"),
}

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a writer killed by SIGPIPE
EXIT_INTERRUPTED = 130


def one_line(text: str) -> str:
    """``text`` on one line: a line break in an echoed path or value is shown as ``\\n``."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line (``PROG: error: ...``), not usage."""

    def error(self, message: str) -> NoReturn:
        line = one_line(f"{self.prog}: error: {message} (see {self.prog} --help)")
        self.exit(EXIT_USER_ERROR, line + "\n")


def _command_module(name: str) -> ModuleType:
    return importlib.import_module(SUBCOMMANDS[name][0])


def build_parser(with_commands: bool = True) -> argparse.ArgumentParser:
    """The top-level parser. The app form (``xnorlab [--screenshot F] [MODEL]``) is parsed
    without subparsers, since argparse would give MODEL to the COMMAND positional."""
    parser = _OneLineParser(
        prog="xnorlab",
        usage="xnorlab [--screenshot FILE.png] [MODEL]\n       xnorlab COMMAND [options]"
        " (xnorlab COMMAND --help for its options)",
        description="A lab for binary neural networks (XNOR-Net / BWN). "
        "Without a subcommand, opens the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"xnorlab {__version__}")
    parser.add_argument(
        "--screenshot", metavar="FILE.png", help="open the app, save a PNG of the window, exit"
    )
    parser.add_argument("model", nargs="?", help="model to open in the app (default: the demo)")
    if not with_commands:
        return parser
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text)
    return parser


def _full_subparser(name: str) -> argparse.ArgumentParser:
    parser = _OneLineParser(prog=f"xnorlab {name}", description=SUBCOMMANDS[name][1])
    _command_module(name).add_arguments(parser)
    return parser


def _show_warning(
    message: Warning | str, category: type[Warning], *_: object, **__: object
) -> None:
    print(f"xnorlab: warning: {message}", file=sys.stderr)


def run_subcommand(name: str, argv: Sequence[str]) -> int:
    """Parse ``argv`` for subcommand ``name`` and run it: every way it can end is one line on
    stderr at most and an exit status (2 bad input, 1 internal error, 130 Ctrl-C, 141 closed
    stdout); ``XNORLAB_DEBUG=1`` shows the traceback of an internal error."""
    try:
        args = _full_subparser(name).parse_args(list(argv))
    except SystemExit as exc:  # --help (0) or a bad argument, already printed as one line
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    except Exception as exc:  # an argument check that failed in a way it did not foresee
        return _internal_error(name, exc)
    warnings.showwarning = _show_warning  # type: ignore[assignment]
    try:
        result: int = _command_module(name).run(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return result
    except XnorlabError as exc:
        print(one_line(f"xnorlab {name}: error: {exc}"), file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:
        _detach_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print(f"xnorlab {name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        return _internal_error(name, exc)


def _internal_error(name: str, exc: Exception) -> int:
    """One line for an exception no check foresaw (exit 1); ``XNORLAB_DEBUG=1`` re-raises it
    for the traceback."""
    if os.environ.get("XNORLAB_DEBUG"):
        raise exc
    detail = " ".join(str(exc).split())[:200]
    print(
        f"xnorlab {name}: internal error: {type(exc).__name__}: {detail} "
        "(a bug: rerun with XNORLAB_DEBUG=1 for the traceback and report it)",
        file=sys.stderr,
    )
    return EXIT_INTERNAL_ERROR


def _detach_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _check_app_model(spec: str) -> None:
    """A bare word the app would open must name a model: ``xnorlab evall`` is a mistyped
    command, not a model to look for after the window opened. Files and ``ARCH:FILE`` specs
    are the app's to open (it asks before trusting a pickle)."""
    text = spec.strip()
    if not text or ":" in text or os.sep in text or Path(text).suffix or existing(text):
        return
    from xnorlab.models.spec import is_model_name  # here: the app form alone needs torch now

    if not is_model_name(text):
        raise XnorlabError(
            f"{quoted(text)} is neither a command ({', '.join(SUBCOMMANDS)}) nor a model "
            "(an architecture name, demo:NAME, FILE or FILE.py:Class)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in SUBCOMMANDS:
        return run_subcommand(args_list[0], args_list[1:])
    if any(arg in ("-h", "--help") for arg in args_list):
        build_parser().parse_args(["--help"])
    try:
        args = build_parser(with_commands=False).parse_args(args_list)
    except SystemExit as exc:  # --version, or a bad argument already printed as one line
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    try:
        if args.screenshot:
            check_output_path(args.screenshot, what="screenshot", suffixes=(".png",))
        if args.model:
            _check_app_model(args.model)
        prepare_display(screenshot=bool(args.screenshot))
    except XnorlabError as exc:
        print(one_line(f"xnorlab: error: {exc}"), file=sys.stderr)
        return EXIT_USER_ERROR
    from xnorlab.gui.app import run_app  # here, not at the top: subcommands must not load Qt

    return run_app(model_spec=args.model, screenshot=args.screenshot)


if __name__ == "__main__":
    sys.exit(main())
