"""``xnorlab report`` / ``xnorlab export``: a working run, and one line + exit 2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xnorlab.cli.main import main
from xnorlab.models.xnor_file import load_xnor


def test_report_cli_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "vgg.json"
    code = main(["report", "demo:vgg", "--data", "none", "--out", str(out), "--no-latency",
                 "--calibration", "4", "--quiet"])  # fmt: skip
    assert code == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["header"]["model_spec"] == "demo:vgg"
    assert data["totals"]["accuracy_float"] is None  # --data none: no labels
    assert data["totals"]["xnor_file_bytes"] > 0
    assert [layer["mode"] for layer in data["layers"]][:2] == ["float", "xnor"]
    assert "wrote" in capsys.readouterr().out


def test_export_cli_writes_a_file_that_opens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "vgg.xnor"
    assert main(["export", "demo:vgg", "--modes", "paper", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "smaller" in printed and "verified" in printed
    assert load_xnor(out).arch == "vgg"


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "demo:vgg", "--out", "r.pdf"],
        ["report", "no-such-model", "--out", "r.md"],
        ["report", "demo:vgg", "--modes", "nonsense", "--data", "none", "--out", "r.md"],
        ["report", "demo:vgg", "--data", "no-such-data", "--out", "r.md"],
        ["report", "demo:vgg", "--threads", "0", "--out", "r.md"],
        ["export", "demo:vgg", "--out", "model.bin"],
        ["export", "no-such-model", "--out", "m.xnor"],
        ["export", "demo:vgg", "--modes", "{bad.json", "--out", "m.xnor"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"xnorlab {argv[0]}: error: ")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_corrupt_xnor_file_via_model_spec_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.xnor").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    assert main(["export", "broken.xnor", "--out", "again.xnor"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.xnor" in err[0]
