"""Every way a subcommand can end: one line on stderr at most, the right exit status."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xnorlab.cli import layers as layers_command
from xnorlab.cli.main import SUBCOMMANDS, main


def _err_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["train", "lenet", "--out", "{tmp}", "--epochs", "1"], "is a directory"),
        (["train", "lenet", "--out", "{tmp}/no/such/x.pt"], "does not exist"),
        (["train", "lenet", "--out", "{tmp}/x.txt"], "use one of .pt"),
        (["train", "lenet", "--out", "{tmp}/x.pt", "--epochs", "0"], "outside 1..10000"),
        (["train", "lenet", "--out", "{tmp}/x.pt", "--batch-size", "0"], "outside 1..65536"),
        (["train", "lenet", "--out", "{tmp}/x.pt", "--max-items", "-1"], "outside 1.."),
        (["train", "lenet", "--out", "{tmp}/x.pt", "--rotate", "nan"], "outside [0.0, 180.0]"),
        (["train", "lenet", "--out", "{tmp}/x.pt", "--epochs", "x"], "not a whole number"),
        (["predict", "lenet", "/dev/zero"], "is a device"),
        (["predict", "lenet", "{tmp}"], "is a directory"),
        (["predict", "lenet", "{tmp}/img.png", "--topk", "0"], "outside 1..1000"),
        # a name the system cannot look up (over its length limit), wherever a path is taken
        (["train", "lenet", "--out", "{tmp}/{long}.pt"], "File name too long"),
        (["export", "demo:lenet", "--out", "{tmp}/{long}.xnor"], "File name too long"),
        (["report", "demo:lenet", "--out", "{tmp}/{long}/r.json"], "File name too long"),
        (["search", "demo:lenet", "--budget", "1", "--out", "{tmp}/{long}.json"],
         "File name too long"),
        (["bench", "--quick", "--save-json", "{tmp}/{long}.json"], "File name too long"),
        (["ensemble", "lenet", "--members", "2", "--out", "{tmp}/{long}.pt"],
         "File name too long"),
        (["ensemble", "{tmp}/{long}.pt"], "is not a file"),
        (["layers", "{tmp}/{long}.pt"], "File name too long"),
        (["predict", "lenet", "{tmp}/{long}.png"], "File name too long"),
    ],
)  # fmt: skip
def test_bad_arguments_are_one_line_and_exit_2_before_any_work(
    argv: list[str], phrase: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [arg.replace("{tmp}", str(tmp_path)).replace("{long}", "a" * 300) for arg in argv]
    before = sorted(tmp_path.rglob("*"))
    assert main(argv) == 2
    lines = _err_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith(f"xnorlab {argv[0]}: error: "), lines
    assert phrase in lines[0]
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, nothing left behind


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["evl", "demo:lenet"], "unrecognized arguments: demo:lenet"),
        (["nosuchcmd"], "'nosuchcmd' is neither a command (layers, "),
        (["--screenshot", "{tmp}/no/s.png"], "folder {tmp}/no does not exist"),
        (["--screenshot", "{tmp}/s.txt"], "use one of .png"),
        (["--screenshot", "{tmp}"], "is a directory"),
    ],
)  # fmt: skip
def test_the_app_form_checks_its_arguments_before_any_window(
    argv: list[str], phrase: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    assert main(argv) == 2
    lines = _err_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("xnorlab: error: "), lines
    assert phrase.replace("{tmp}", str(tmp_path)) in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_a_line_break_in_a_path_stays_on_the_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["layers", f"{tmp_path}/no\nsuch.pt"],
                 ["export", "demo:lenet", "--out", f"{tmp_path}/no\ndir/m.xnor"]):  # fmt: skip
        assert main(argv) == 2
        lines = _err_lines(capsys)
        assert len(lines) == 1 and "no\\n" in lines[0], lines


def test_a_packed_model_is_refused_for_training(tmp_path: Path, capsys) -> None:
    assert main(["export", "demo:lenet-xnor", "--out", str(tmp_path / "m.xnor")]) == 0
    capsys.readouterr()
    assert main(["train", str(tmp_path / "m.xnor"), "--out", str(tmp_path / "t.pt")]) == 2
    assert "cannot be trained" in _err_lines(capsys)[0]
    assert not (tmp_path / "t.pt").exists()
    # nor can mode flags change it: they were ignored, the output that of the stored modes
    packed = str(tmp_path / "m.xnor")
    for argv, flags in (
        (["predict", packed, "--modes", "float", "--scaling", "none", packed], "--modes and --scaling"),
        (["eval", packed, "--pad-mode", "zero"], "--pad-mode"),
    ):  # fmt: skip
        assert main(argv) == 2
        lines = _err_lines(capsys)
        assert len(lines) == 1 and f"{flags} cannot change a packed .xnor model" in lines[0]


def test_an_internal_error_is_one_line_exit_1(monkeypatch, capsys) -> None:
    def broken(args: object) -> int:
        raise TypeError("unexpected\nmultiline")

    monkeypatch.setattr(layers_command, "run", broken)
    assert main(["layers", "demo:lenet"]) == 1
    lines = _err_lines(capsys)
    assert len(lines) == 1 and "internal error: TypeError: unexpected multiline" in lines[0]
    monkeypatch.setenv("XNORLAB_DEBUG", "1")
    with pytest.raises(TypeError):
        main(["layers", "demo:lenet"])


def test_an_argument_check_that_breaks_is_one_line_exit_1(monkeypatch, capsys) -> None:
    def breaking_type(text: str) -> str:
        raise OSError(5, "Input/output error")

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("model", type=breaking_type)

    monkeypatch.setattr(layers_command, "add_arguments", add_arguments)
    assert main(["layers", "demo:lenet"]) == 1
    lines = _err_lines(capsys)
    assert len(lines) == 1 and "internal error: OSError: [Errno 5] Input/output error" in lines[0]


def test_a_closed_stdout_ends_quietly() -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "xnorlab.cli.main", "layers", "demo:lenet"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before the first write, like `| head -0`
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err, err


@pytest.mark.parametrize("name", [n for n in SUBCOMMANDS if n != "bench"])
def test_every_command_that_opens_a_model_file_has_the_trust_switch_its_errors_name(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pickle's refusal says '(command line: --trust)': every command that opens a model
    file must then take --trust."""
    assert main([name, "--help"]) == 0
    assert "--trust" in capsys.readouterr().out
