"""``xnorlab ensemble``: bad input ends in one line before any work; a quick run trains,
writes the ensemble and the plot, and evaluates it; an ensemble file is evaluated again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xnorlab.cli.main import main
from xnorlab.models.ensemble import BinaryEnsemble
from xnorlab.models.spec import load_model_spec

QUICK = ["--data", "digits", "--epochs", "1", "--max-items", "96", "--samples", "60"]


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["nonet", "--members", "2", "--out", "{tmp}/e.pt"], "unknown architecture"),
        (["lenet", "--members", "0", "--out", "{tmp}/e.pt"], "outside 1..64"),
        (["lenet", "--members", "65", "--out", "{tmp}/e.pt"], "outside 1..64"),
        (["lenet", "--members", "2", "--out", "{tmp}"], "is a directory"),
        (["lenet", "--members", "2", "--out", "{tmp}/e.ts"], "use one of .pt"),
        (["lenet", "--members", "2", "--out", "{tmp}/no/e.pt"], "does not exist"),
        (["lenet", "--members", "2"], "needs --members K and --out"),
        (["lenet", "--out", "{tmp}/e.pt"], "needs --members K and --out"),
        (["lenet", "--members", "2", "--out", "{tmp}/e.pt", "--plot", "{tmp}/p.txt"], ".png"),
        (["vgg", "--members", "2", "--out", "{tmp}/e.pt"], "--baseline"),
        (["lenet", "--members", "2", "--out", "{tmp}/e.pt", "--baseline", "demo:lenet-xnor"],
         "not a float model"),
        (["lenet", "--members", "2", "--out", "{tmp}/e.pt", "--modes", "nosuch"],
         "neither a preset"),
        (["{tmp}/missing.pt"], "is not a file"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_before_any_work(
    argv: list[str], phrase: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["ensemble", *(a.replace("{tmp}", str(tmp_path)) for a in argv)]
    before = sorted(tmp_path.rglob("*"))
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xnorlab ensemble: error: "), lines
    assert phrase in lines[0]
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.slow
def test_train_evaluate_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, plot = tmp_path / "ens.pt", tmp_path / "ens.png"
    argv = ["ensemble", "lenet", "--members", "2", "--bagging", "--out", str(out),
            "--plot", str(plot), "--json", "--threads", "1", *QUICK]  # fmt: skip
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)  # stdout is the JSON alone
    assert payload["baseline"] == "demo:lenet" and len(payload["ensembles"]) == 2
    assert payload["sample"]["count"] == 60
    assert all(e["accuracy"]["n"] == 60 for e in payload["ensembles"])
    assert payload["within_memory"] == 2  # two XNOR LeNets pack far below one float LeNet
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loaded = load_model_spec(str(out))
    assert isinstance(loaded.model, BinaryEnsemble) and loaded.card["ensemble"]["bagging"]

    # the file alone is evaluated again, with the same accuracies (same sample, same weights)
    assert main(["ensemble", str(out), "--data", "digits", "--samples", "60", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert [e["accuracy"] for e in second["ensembles"]] == [
        e["accuracy"] for e in payload["ensembles"]
    ]
    assert main(["ensemble", str(out), "--members", "3"]) == 2  # a trained file trains no more
