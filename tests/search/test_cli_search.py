"""``xnorlab search``: bad input ends before any work, --json shape, --out round trip."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from xnorlab.binary.modes import Backend
from xnorlab.cli import search as search_command
from xnorlab.cli.main import main
from xnorlab.common.tasks import check_cancel
from xnorlab.data.datasets import load_dataset
from xnorlab.data.sampling import SampleInfo
from xnorlab.measure.accuracy import tensor_correct
from xnorlab.measure.front import Agreement, FrontPoint, Objective, SearchResult
from xnorlab.measure.intervals import Accuracy
from xnorlab.measure.machine import engine_context
from xnorlab.models.spec import load_model_spec
from xnorlab.search.splits import splits_of, stack_items


@pytest.mark.parametrize(
    ("extra", "phrase"),
    [
        (["--budget", "-1"], "outside [0.0, 100.0]"),
        (["--budget", "nan"], "outside [0.0, 100.0]"),
        (["--budget", "inf"], "outside [0.0, 100.0]"),
        (["--budget", "x"], "not a number"),
        (["--budget", "1", "--out", "{tmp}"], "is a directory"),
        (["--budget", "1", "--out", "{tmp}/no/such/m.json"], "does not exist"),
        (["--budget", "1", "--out", "{tmp}/m.txt"], "use one of .json"),
        (["--budget", "1", "--objective", "speed"], "invalid choice"),
        (["--budget", "1", "--finetune-epochs", "-1"], "outside 0..10000"),
        (["--budget", "1", "--max-items", "0"], "outside 1.."),
        (["--budget", "1", "--threads", "0"], "outside 1..256"),
        (["--budget", "1", "--save-model", "{tmp}"], "is a directory"),
        (["--budget", "1", "--save-model", "{tmp}/no/such/m.pt"], "does not exist"),
        (["--budget", "1", "--save-model", "{tmp}/m.pth"], "use one of .pt"),
        (["--budget", "1", "--save-model", "{tmp}/m.pt"], "give --finetune-epochs N"),
        (
            ["--budget", "1", "--finetune-epochs", "0", "--save-model", "{tmp}/m.pt"],
            "give --finetune-epochs N",
        ),
        ([], "--budget"),
    ],
)
def test_bad_arguments_are_one_line_exit_2_and_nothing_is_written(
    extra: list[str], phrase: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["search", "demo:lenet", "--data", "mnist5k"] + [
        a.replace("{tmp}", str(tmp_path)) for a in extra
    ]
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xnorlab search: error: "), lines
    assert phrase in lines[0]
    assert list(tmp_path.rglob("*")) == []


def test_unknown_data_and_a_model_without_data_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.json"
    assert (
        main(["search", "demo:lenet", "--data", "nosuch", "--budget", "1", "--out", str(out)]) == 2
    )
    assert main(["search", "resnet18", "--budget", "1", "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "unknown data" in lines[0] and "give --data" in lines[1]
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::xnorlab.binary.surgery.FirstLastBinarizedWarning")
def test_json_prints_the_result_and_out_is_a_mode_file_layers_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "modes.json"
    argv = ["search", "demo:lenet", "--data", "mnist5k", "--budget", "100", "--objective", "memory",
            "--max-items", "40", "--threads", "1", "--json", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["float"]) >= {"modes", "accuracy", "latency_ms", "memory_bytes"}
    assert result["front"] and all(
        set(point) >= {"modes", "accuracy", "latency_ms", "memory_bytes"}
        for point in result["front"]
    )
    chosen = result["chosen"]
    assert set(chosen) >= {"modes", "accuracy", "latency_ms", "memory_bytes", "confirm_accuracy"}
    assert result["score_sample"]["count"] == 40 and result["confirm_sample"]["count"] == 40
    # a 100-point budget admits everything: the smallest point binarizes every layer
    assert set(chosen["modes"].values()) == {"bwn"}
    assert chosen["memory_bytes"] == min(p["memory_bytes"] for p in result["front"])
    assert json.loads(out.read_text()) == chosen["modes"]
    assert main(["layers", "demo:lenet", "--modes", str(out), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {layer["name"]: layer["mode"] for layer in listed["layers"]} == chosen["modes"]


def test_ctrl_c_cancels_in_one_line_exit_130_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted_search(
        *args: object, should_cancel: Callable[[], bool], **kwargs: object
    ) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl+C during the search
        check_cancel(should_cancel, "search")
        raise AssertionError("Ctrl+C did not turn into a cancel request")

    monkeypatch.setattr(search_command, "search_modes", interrupted_search)
    out = tmp_path / "modes.json"
    argv = ["search", "demo:lenet", "--data", "mnist5k", "--budget", "1", "--out", str(out)]
    assert main(argv) == 130
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines()[-1] == "xnorlab search: cancelled; nothing written"
    assert captured.out == "" and not out.exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_report_refuses_a_bad_search_budget_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.md"
    assert main(["report", "demo:lenet", "--out", str(out), "--search-budget", "-2"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "outside [0.0, 100.0]" in lines[0] and not out.exists()


@pytest.mark.slow
def test_report_with_a_search_budget_shows_the_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.md"
    argv = ["report", "demo:lenet", "--data", "mnist5k", "--limit", "30", "--no-sensitivity",
            "--no-latency", "--quiet", "--threads", "1", "--search-budget", "100",
            "--search-objective", "memory", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    text = out.read_text()
    assert "## What to binarize: searched front" in text
    assert "| score split (chooses) | 30 items, seed 0, 3 per class (10 classes) |" in text
    assert "| chosen | BBBB | 4 of 4 |" in text  # 100 points admit all: the smallest point


def test_a_packed_model_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    packed = tmp_path / "m.xnor"
    assert main(["export", "demo:lenet-xnor", "--out", str(packed)]) == 0
    capsys.readouterr()
    out = tmp_path / "modes.json"
    argv = ["search", str(packed), "--data", "mnist5k", "--budget", "1", "--out", str(out)]
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "packed 1-bit layers" in lines[0] and not out.exists()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::xnorlab.binary.surgery.FirstLastBinarizedWarning")
def test_save_model_writes_the_fine_tuned_checkpoint_that_scores_the_confirm_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved, items = tmp_path / "ft.pt", 40
    argv = ["search", "demo:lenet", "--data", "mnist5k", "--budget", "100", "--objective",
            "memory", "--max-items", str(items), "--threads", "1", "--finetune-epochs", "1",
            "--save-model", str(saved), "--json"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    chosen = result["chosen"]
    assert set(chosen["modes"].values()) == {"bwn"}  # 100 points admit every layer binary
    record = torch.load(saved, weights_only=True)  # the train --out format, weights only
    card = record["xnorlab"]["card"]
    assert card["search"]["budget_points"] == 100 and card["search"]["finetune_epochs"] == 1
    assert card["search"]["modes"] == chosen["modes"] and card["search"]["seed"] == 0
    assert card["search"]["confirm_sample"] == result["confirm_sample"]
    loaded = load_model_spec(str(saved))
    assert {name: str(mode) for name, mode in loaded.modes.items()} == chosen["modes"]
    # the confirm split drawn as the search drew it, counted as the search counted it
    bundle = load_dataset("mnist5k", loaded.preprocessing)
    splits, _ = splits_of(bundle.val, items, items, seed=0)
    inputs, labels = stack_items(bundle.val, splits.confirm)
    model = loaded.model.eval()
    with engine_context(model, Backend.NATIVE):
        correct = tensor_correct(model, inputs, labels, 128, lambda: None)
    assert int(np.sum(correct)) == chosen["confirm_accuracy_detail"]["hits"]
    assert len(correct) == chosen["confirm_accuracy_detail"]["n"] == items


def _result(confirm_hits: int, float_hits: int, finetune_epochs: int = 0) -> SearchResult:
    floats = FrontPoint({"a": "float", "b": "float"}, Accuracy(99, 100), 1.0, (0.9, 1.1), 800)  # type: ignore[dict-item]
    chosen = FrontPoint({"a": "xnor", "b": "float"}, Accuracy(98, 100), 0.8, (0.7, 0.9), 400)  # type: ignore[dict-item]
    sample = SampleInfo(count=500, seed=0, per_class=None)
    return SearchResult(
        float_point=floats, front=(chosen, floats), chosen=chosen,
        confirm_accuracy=Accuracy(confirm_hits, 500), confirm_float=Accuracy(float_hits, 500),
        budget_points=1.0, objective=Objective.LATENCY, metric=Agreement.TOP1,
        score_sample=sample, confirm_sample=sample, evaluated=3, finetune_epochs=finetune_epochs,
    )  # fmt: skip


def test_a_choice_over_budget_on_the_confirm_split_is_said_in_one_line_and_in_json() -> None:
    over = _result(489, 496)  # 97.8 % vs 99.2 %: 1.4 points lost, budget 1
    lines = [
        line for line in search_command.result_text(over, "x").splitlines() if "warning" in line
    ]
    assert len(lines) == 1
    assert "lose 1.4 pts" in lines[0] and "1-point budget" in lines[0]
    assert "try --finetune-epochs 3" in lines[0]
    assert over.to_json()["chosen"]["confirm_within_budget"] is False
    tuned = _result(489, 496, finetune_epochs=3)
    assert "try more --finetune-epochs" in search_command.result_text(tuned, "x")
    within = _result(491, 496)  # exactly 1.0 point lost: within
    assert "warning" not in search_command.result_text(within, "x")
    assert within.to_json()["chosen"]["confirm_within_budget"] is True
