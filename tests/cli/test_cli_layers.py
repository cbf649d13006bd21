"""`xnorlab layers`: the first real subcommand, its JSON, and one-line errors with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from xnorlab.cli.main import main


def test_layers_resnet18_paper_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["layers", "resnet18", "--modes", "paper"]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines()[3:] if line.strip() and not line.startswith("(!)")]
    rows = {line.split()[0]: line.split()[5] for line in table}
    assert len(rows) == 21
    assert rows["conv1"] == "float" and rows["fc"] == "float"
    assert all(mode == "xnor" for name, mode in rows.items() if name not in ("conv1", "fc"))


def test_layers_json_matches_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["layers", "resnet18", "--modes", "paper", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    layers = {row["name"]: row for row in data["layers"]}
    assert layers["conv1"]["mode"] == "float" and layers["fc"]["mode"] == "float"
    assert layers["layer1.0.conv1"] == {
        "name": "layer1.0.conv1",
        "type": "conv2d",
        "weight_shape": [64, 64, 3, 3],
        "params": 36864,
        "macs": 56 * 56 * 64 * 64 * 9,
        "mode": "xnor",
        "input_never_negative": True,  # after a ReLU: every input bit is +1
    }
    assert layers["fc"]["macs"] == 512 * 1000
    assert layers["conv1"]["input_never_negative"] is False  # normalized photos


def test_layers_flags_xnor_layers_whose_input_is_never_negative(capsys) -> None:
    assert main(["layers", "resnet18", "--modes", "paper"]) == 0
    out = capsys.readouterr().out
    assert out.count("(!) input >= 0") == 19 and "(!) 19 XNOR layer(s): input never negative" in out
    assert main(["layers", "demo:lenet", "--modes", "paper"]) == 0
    assert "(!)" not in capsys.readouterr().out  # BatchNorm -> Hardtanh -> binary conv


def test_layers_names_attention_projections_that_stay_float(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["layers", "vit_b_16", "--modes", "paper", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    fixed = data["not_binarizable"]
    assert len(fixed) == 12 and all(name.endswith("self_attention.out_proj") for name in fixed)
    assert not any(row["name"] in fixed for row in data["layers"])
    assert data["layers"][-1]["name"] == "heads.head" and data["layers"][-1]["mode"] == "float"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["layers", "resnet1"], "unknown model 'resnet1'"),
        (["layers", "resnet18", "--modes", "missing.json"], "cannot read mode file"),
        (["layers", "resnet18", "--modes", "fast"], "neither a preset"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


def test_unknown_layer_in_mode_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "modes.json"
    path.write_text(json.dumps({"layer9.conv": "xnor"}))
    assert main(["layers", "resnet18", "--modes", str(path)]) == 2
    assert "unknown layer 'layer9.conv'" in capsys.readouterr().err


def test_cli_and_core_import_no_qt() -> None:
    code = (
        "import sys, xnorlab, xnorlab.binary.stats, xnorlab.cli.main as m;"
        "rc = m.main(['layers', 'alexnet', '--json']);"
        "assert rc == 0;"
        "bad = [k for k in sys.modules if k.startswith(('PySide6', 'pyqtgraph'))];"
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_help_lists_subcommands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "xnorlab.cli.main", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "layers" in result.stdout


def test_readme_test_command_is_what_ci_runs() -> None:
    root = Path(__file__).resolve().parents[2]
    ci = (root / ".ci" / "run").read_text()
    readme = (root / "README.md").read_text()
    assert "make test" in ci.split("\n")[-2] or ci.strip().endswith("make test")
    quick = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "make run" in quick and "make test" in quick


def test_app_form_accepts_a_model_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    import xnorlab.gui.app as app

    calls: list[tuple[str | None, str | None]] = []
    monkeypatch.setattr(
        app,
        "run_app",
        lambda model_spec=None, screenshot=None: calls.append((model_spec, screenshot)) or 0,
    )
    assert main(["demo:lenet"]) == 0
    assert main(["--screenshot", "shot.png", "resnet18"]) == 0
    assert calls == [("demo:lenet", None), ("resnet18", "shot.png")]


@pytest.mark.parametrize("spec", ["xresnet18-small", "xresnet18"])
def test_layers_binary_resnet_has_no_never_negative_warning(
    spec: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["layers", spec, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["layers"]
    xnor = [row for row in rows if row["mode"] == "xnor"]
    assert len(xnor) == 19 and not any(row["input_never_negative"] for row in xnor)
    assert {row["name"]: row["mode"] for row in rows}["stem.0"] == "float"
    assert main(["layers", spec]) == 0
    assert "(!)" not in capsys.readouterr().out
