"""The user's own model code (``FILE.py:Class``, ``package.module:Class``) through every command,
and one line with exit 2 for each way it can go wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from xnorlab.cli.main import main
from xnorlab.models.spec import load_model_spec
from xnorlab.models.user_code import CodeOptions

NETS = '''
import torch
from torch import nn


class Net(nn.Module):
    """Two convs and a linear layer for 1x28x28 digits; BatchNorm before every sign."""

    input_shape = (1, 28, 28)

    def __init__(self, width=4, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, stride=2)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=2)
        self.bn2 = nn.BatchNorm1d(width * 36)
        self.fc = nn.Linear(width * 36, classes)

    def forward(self, x):
        x = nn.functional.hardtanh(self.bn1(self.conv1(x)))
        return self.fc(self.bn2(torch.flatten(self.conv2(x), 1)))


class Shapeless(Net):
    input_shape = None


class Faulty(nn.Module):
    def __init__(self):
        raise ValueError("needs a GPU")


class Plain:
    pass


def helper():
    return 1
'''


@pytest.fixture
def code(tmp_path: Path) -> Path:
    """A folder with ``nets.py``, a state_dict of ``Net`` in .pt and .safetensors, a broken file
    and a package ``mypkg.models``."""
    (tmp_path / "nets.py").write_text(NETS)
    (tmp_path / "broken.py").write_text('raise RuntimeError("boom at import")\n')
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(NETS)
    torch.manual_seed(0)
    state = load_model_spec(f"{tmp_path / 'nets.py'}:Net").model.state_dict()
    torch.save(state, tmp_path / "w.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    renamed = {("head." + k[3:] if k.startswith("fc.") else k): v for k, v in state.items()}
    torch.save(renamed, tmp_path / "renamed.pt")
    (tmp_path / "three.txt").write_text("cat\ndog\n\nbird\n")
    return tmp_path


def _digit_png(path: Path) -> Path:
    pixels = np.full((40, 32), 250, dtype=np.uint8)
    pixels[6:34, 14:19] = 10  # a dark "1" on light paper
    Image.fromarray(pixels).save(path)
    return path


def _json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_a_class_in_a_file_works_in_every_command(
    code: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, weights = f"{code / 'nets.py'}:Net", str(code / "w.pt")
    layers = _json(["layers", spec, "--weights", weights, "--json"], capsys)
    assert [row["name"] for row in layers["layers"]] == ["conv1", "conv2", "fc"]
    assert layers["input_shape"] == [1, 28, 28] and layers["layers"][1]["mode"] == "xnor"

    result = _json(["eval", spec, "--weights", weights, "--data", "digits", "--max-items", "40",
                    "--modes", "paper", "--json"], capsys)  # fmt: skip
    assert result["count"] == 40 and result["modes"]["conv2"] == "xnor"
    assert len(result["confusion"]) == 10 and result["class_names"] == [str(d) for d in range(10)]

    image = _digit_png(code / "one.png")
    predicted = _json(["predict", spec, "--weights", weights, str(image), "--json"], capsys)
    assert len(predicted["predictions"][0]["top"]) == 3

    out = code / "net.xnor"
    assert main(["export", spec, "--weights", weights, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "verified: the file opens" in printed
    reopened = load_model_spec(spec, code=CodeOptions(weights=str(out)))
    assert reopened.card["packed_modes"] == {"conv2": "xnor"}

    report = code / "net.md"
    assert main(["report", spec, "--weights", weights, "--out", str(report), "--data", "none",
                 "--no-latency", "--no-sensitivity", "--quiet"]) == 0  # fmt: skip
    assert "3 layers" in capsys.readouterr().out and report.read_text().strip()


def test_training_a_class_writes_a_checkpoint_it_reopens_with(
    code: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, out = f"{code / 'nets.py'}:Net", code / "trained.pt"
    assert main(["train", spec, "--data", "digits", "--epochs", "1", "--max-items", "64",
                 "--batch-size", "16", "--modes", "paper", "--out", str(out)]) == 0  # fmt: skip
    assert "kept epoch 1" in capsys.readouterr().out and out.exists()
    loaded = load_model_spec(spec, code=CodeOptions(weights=str(out)))
    assert loaded.default_data == "digits" and loaded.preprocessing is not None
    assert str(loaded.modes["conv2"]) == "xnor"  # the stored modes apply
    assert main(["eval", str(out)]) == 2  # by name alone: no code is imported
    error = capsys.readouterr().err.strip()
    assert error.startswith("xnorlab eval: error: trained.pt holds weights of the Python class")
    assert f"open it as {spec} --weights {out}" in error


def test_weights_formats_modules_kwargs_and_class_names(
    code: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_pt = load_model_spec(f"{code / 'nets.py'}:Net", code=CodeOptions(str(code / "w.pt")))
    safetensors = CodeOptions(str(code / "w.safetensors"), class_names=tuple("abcdefghij"))
    from_st = load_model_spec(f"{code / 'nets.py'}:Net", code=safetensors)
    for key, value in from_pt.model.state_dict().items():
        assert torch.equal(value, from_st.model.state_dict()[key])
    assert from_st.class_names == list("abcdefghij") and from_pt.preprocessing is None

    monkeypatch.chdir(code)  # a module is found from the current folder, as python -m does
    options = CodeOptions(arch_kwargs={"width": 2, "classes": 3}, input_shape=(1, 28, 28))
    loaded = load_model_spec("mypkg.models:Shapeless", code=options)
    assert loaded.model.fc.out_features == 3 and loaded.class_names == ["0", "1", "2"]
    assert loaded.input_shape == (1, 28, 28) and loaded.card["code"]["kwargs"]["width"] == 2


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and not captured.out, captured
    assert lines[0].startswith(f"xnorlab {argv[0]}: error: "), lines
    return lines[0]


ERRORS = [
    (["missing.py:Net"], "cannot read model code file", "missing.py: no such file"),
    (["nosuchpkg_xnorlab.models:Net"], "no module named 'nosuchpkg_xnorlab'", ""),
    (["broken.py:Net"], "importing broken.py failed: RuntimeError: 'boom at import'", ""),
    (["nets.py:Nope"], "nets.py has no class 'Nope'", "(its nn.Module classes: Faulty, Net,"),
    (["nets.py:helper"], "helper in nets.py is a function, not an nn.Module class", ""),
    (["nets.py:Plain"], "Plain in nets.py is not an nn.Module class", "derives from object"),
    (["nets.py:Faulty"], "Faulty() failed: ValueError: 'needs a GPU'", ""),
    (
        ["nets.py:Net", "--arch-kwargs", '{"depth": 2}'],
        "Net() with --arch-kwargs {'depth': 2} failed: TypeError:",
        "unexpected keyword argument 'depth'",
    ),
    (
        ["nets.py:Net", "--arch-kwargs", "{width: 2}"],
        "argument --arch-kwargs: the value is not valid JSON",
        "",
    ),
    (["nets.py:Net", "--arch-kwargs", "[2]"], "the value must be a JSON object", ""),
    (
        ["nets.py:Net", "--weights", "renamed.pt"],
        "weights renamed.pt does not fit the "
        "architecture: missing 2 (e.g. fc.weight, fc.bias); unexpected 2 (e.g. head.weight,",
        "",
    ),
    (
        ["nets.py:Net", "--weights", "w.pt", "--arch-kwargs", '{"width": 3}'],
        "weights w.pt does not fit the architecture: wrong shape",
        "conv1.weight (4, 1, 3, 3) vs (3, 1, 3, 3)",
    ),
    (["nets.py:Net", "--weights", "absent.pt"], "cannot read weights file absent.pt", ""),
    (
        ["nets.py:Shapeless"],
        "Shapeless does not say what input it takes: give --input-shape "
        "C,H,W (e.g. 1,28,28) or an input_shape class attribute",
        "",
    ),
    (
        ["nets.py:Net", "--input-shape", "1,28"],
        "argument --input-shape: the input shape must be C,H,W",
        "",
    ),
    (
        ["nets.py:Net", "--input-shape", "3,28,28"],
        "nets.py:Net: the model does not run on its input [3, 28, 28]",
        "",
    ),
    (
        ["nets.py:Net", "--class-names", "three.txt"],
        "it names 3 classes but the model outputs 10",
        "",
    ),
    (["demo:lenet", "--weights", "w.pt"], "--weights: for your own code only", ""),
]


@pytest.mark.parametrize(("argv", "expected", "also"), ERRORS, ids=[e[1][:40] for e in ERRORS])
def test_every_failure_is_one_line_naming_its_cause(
    code: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    argv: list[str], expected: str, also: str,
) -> None:  # fmt: skip
    monkeypatch.chdir(code)
    line = _error(["layers", *argv], capsys)
    assert expected in line and also in line, line


def test_a_packed_export_of_a_class_is_opened_only_through_the_class(
    code: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(code)
    assert main(["export", "nets.py:Net", "--out", "n.xnor", "--no-verify"]) == 0
    capsys.readouterr()
    line = _error(["eval", "n.xnor", "--data", "digits"], capsys)
    assert "n.xnor holds the Python class nets.py:Net" in line
    assert "open it as nets.py:Net --weights n.xnor" in line


@pytest.mark.parametrize("command", ["layers", "eval", "predict", "train", "report", "export"])
def test_every_command_says_that_naming_code_runs_it(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "FILE.py:Class or package.module:Class imports and runs that Python code" in text
    assert "your explicit choice, so name only code you trust" in text
    for flag in ("--weights FILE", "--arch-kwargs JSON", "--input-shape C,H,W", "--class-names"):
        assert flag in text
