"""``xnorlab eval``: a folder is evaluated whole, a fixed split says so, every accuracy has its
interval, and bad arguments end in one line before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xnorlab.cli.main import main

PER_CLASS = {"0": 7, "1": 5, "7": 4}  # 16 images, uneven on purpose


def _digit_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name, count in PER_CLASS.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(root / name / f"{i}.png")
    return root


def _run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["eval", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_folder_counts_every_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _digit_folder(tmp_path / "digits")
    data = _run_json(["demo:lenet-xnor", "--data", str(folder)], capsys)
    assert data["split"] == "all" and "whole folder" in data["split_reason"]
    assert data["count"] == sum(PER_CLASS.values()) == data["sample"]["count"]
    assert data["sample"]["per_class"] == {"0": 7, "1": 5, "7": 4}
    accuracy = data["accuracy"]
    assert accuracy["n"] == 16 and accuracy["interval95"][0] <= accuracy["top1"]
    assert data["per_class_accuracy"]["7"]["n"] == 4
    part = _run_json(["demo:lenet-xnor", "--data", str(folder), "--split", "val"], capsys)
    assert part["split"] == "val" and part["count"] < 16  # the folder's seeded 20 %


def test_eval_text_says_what_it_evaluated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _digit_folder(tmp_path / "digits")
    assert main(["eval", "demo:lenet-xnor", "--data", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == f"data {folder}, split all: the whole folder (--split train|val for a part)"
    assert lines[2] == "evaluated every item: 16 items, seed 0 (0: 7, 1: 5, 7: 4)"
    assert lines[3].startswith("run: torch simulation")
    assert lines[4].startswith("top-1 ") and "(n=16)" in lines[4]
    assert any(line.strip().startswith("7") and "(n=4)" in line for line in lines)


def test_a_fixed_split_keeps_val_and_says_so_and_samples_are_stratified(
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = _run_json(["demo:lenet-xnor", "--max-items", "30"], capsys)
    assert data["data"] == "mnist5k" and data["split"] == "val"
    assert "fixed val split" in data["split_reason"]
    # mnist5k's val split is sorted by class: a stratified sample has every class
    assert data["sample"]["per_class"] == {str(d): 3 for d in range(10)}
    assert data["count"] == 30


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["--batch-size", "0"], "argument --batch-size: 0 is outside 1..65536"),
        (["--max-items", "-1"], "argument --max-items: -1 is outside 1.."),
        (["--max-items", "0"], "argument --max-items: 0 is outside 1.."),
        (["--split", "test"], "argument --split: invalid choice"),
    ],
)
def test_bad_eval_arguments_are_one_line_and_exit_2(
    argv: list[str], phrase: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", "demo:lenet-xnor", *argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and phrase in err[0] and not captured.out


def test_eval_through_the_engine_matches_the_simulation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["demo:lenet-xnor", "--data", "mnist5k", "--max-items", "300"]
    simulated = _run_json(argv, capsys)
    engine = _run_json([*argv, "--engine"], capsys)
    assert simulated["engine"].startswith("torch simulation")
    assert engine["engine"].startswith("XNOR engine, deploy:")
    assert engine["count"] == simulated["count"] == 300
    assert engine["confusion"] == simulated["confusion"]
    assert engine["loss"] == pytest.approx(simulated["loss"], rel=1e-4)
    assert main(["eval", *argv, "--engine"]) == 0
    assert "run: XNOR engine, deploy: fused chains" in capsys.readouterr().out
