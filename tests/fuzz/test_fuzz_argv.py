"""Argument vectors: wrong types, numbers out of range, missing files, folders, devices and
FIFOs as inputs and as ``--out``. Every one ends as one line and exit 2, and writes nothing.

``{xnor}`` is the session's export of ``demo:lenet-xnor``, ``{img}`` a digit PNG, ``{tmp}``
the case's empty folder, ``{fifo}`` a FIFO and ``{dir}`` a folder in it. No case names a
device as an output: a command that failed to refuse it would replace the device node.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from fuzz_support import Samples, check_predictions, fuzz, make_fifo, run_case
from hypothesis import given
from hypothesis import strategies as st

QUICK_REPORT = ["--data", "random", "--no-sensitivity", "--no-latency", "--quiet"]
LONG_NAME = "x" * 5000  # longer than any file name the OS accepts


ARGV_CASES: list[Any] = [
    # predict: inputs that are no image file, bad numbers, bad model specs
    ["predict", "{xnor}", "{fifo}"],
    ["predict", "{xnor}", "/dev/zero"],
    ["predict", "{xnor}", "{dir}"],
    ["predict", "{xnor}", "{tmp}/missing.png"],
    ["predict", "{xnor}", "{img}", "--topk", "0"],
    ["predict", "{xnor}", "{img}", "--topk", "-3"],
    ["predict", "{xnor}", "{img}", "--topk", "2.5"],
    ["predict", "{xnor}", "{img}", "--topk", "99999999999999999999999"],
    ["predict", "{xnor}", "{img}", "--scaling", "huge"],
    ["predict", "{xnor}", "{img}", "--modes", "ternary"],
    ["predict", "{xnor}", "{img}", "--modes", "{fifo}"],
    ["predict", "{xnor}"],
    ["predict", "{fifo}", "{img}"],
    ["predict", "{tmp}/fifo.xnor", "{img}"],
    ["predict", "/dev/zero", "{img}"],
    ["predict", "{dir}", "{img}"],
    ["predict", "{tmp}/missing.xnor", "{img}"],
    ["predict", "{tmp}/missing.pt", "{img}"],
    ["predict", "", "{img}"],
    ["predict", "demo:nothing", "{img}"],
    ["predict", LONG_NAME, "{img}"],
    ["predict", LONG_NAME + ".pt", "{img}"],
    ["predict", LONG_NAME + ".xnor", "{img}"],
    ["predict", "lenet:/dev/zero", "{img}"],
    ["predict", "lenet:{fifo}", "{img}"],
    ["predict", "lenet:{img}", "{img}"],
    ["predict", "{img}/model.pt", "{img}"],
    # eval: numbers, splits and data that are not data
    ["eval", "{xnor}", "--batch-size", "0"],
    ["eval", "{xnor}", "--batch-size", "-5"],
    ["eval", "{xnor}", "--max-items", "-1"],
    ["eval", "{xnor}", "--max-items", "0"],
    ["eval", "{xnor}", "--max-items", "1e3"],
    ["eval", "{xnor}", "--batch-size", "many"],
    ["eval", "{xnor}", "--split", "test"],
    ["eval", "{xnor}", "--data", "/dev/zero"],
    ["eval", "{xnor}", "--data", "{fifo}"],
    ["eval", "{xnor}", "--data", "{tmp}/missing"],
    ["eval", "{xnor}", "--data", "{dir}"],
    ["eval", "{xnor}", "--data", "mnist:{tmp}/missing"],
    ["eval", "{xnor}", "--data", "cifar10:/dev/zero"],
    ["eval", "{xnor}", "--data", LONG_NAME],
    # export: outputs that are no new .xnor file
    ["export", "demo:lenet-xnor", "--out", "{dir}"],
    ["export", "demo:lenet-xnor", "--out", "{tmp}/model.pt"],
    ["export", "demo:lenet-xnor", "--out", "{tmp}/missing/model.xnor"],
    ["export", "demo:lenet-xnor", "--out", "{tmp}/model.xnor", "--modes", "{fifo}"],
    ["export", "{xnor}", "--out", "{tmp}/again.xnor"],
    ["export", "demo:lenet-xnor", "--out", "{tmp}/fifo.xnor"],
    # report: outputs and numbers
    ["report", "demo:lenet-xnor", "--out", "{dir}", *QUICK_REPORT],
    ["report", "demo:lenet-xnor", "--out", "{tmp}/report.pdf", *QUICK_REPORT],
    ["report", "demo:lenet-xnor", "--out", "{tmp}/r.html", "--threads", "0", *QUICK_REPORT],
    ["report", "demo:lenet-xnor", "--out", "{tmp}/r.html", "--threads", "two", *QUICK_REPORT],
    ["report", "demo:lenet-xnor", "--out", "{tmp}/r.json", "--calibration", "0", *QUICK_REPORT],
    ["report", "demo:lenet-xnor", "--out", "{tmp}/r.json", "--calibration", "-3", *QUICK_REPORT],
    ["report", "demo:lenet-xnor", "--out", "{tmp}/r.json", "--data", "{fifo}", "--quiet"],
    ["report", "{xnor}", "--out", "{tmp}/r.json", *QUICK_REPORT],
    ["report", "demo:lenet-xnor", "--out", "{tmp}/fifo.html", *QUICK_REPORT],
    ["report", "demo:lenet-xnor", "--out", "{tmp}/r.json", "--limit", "-1", *QUICK_REPORT],
    # train: every argument is checked before any training
    ["train", "lenet", "--out", "{tmp}/fifo.pt"],
    ["train", "lenet", "--out", "{dir}"],
    ["train", "lenet", "--out", "{tmp}/model.onnx"],
    ["train", "lenet", "--out", "{tmp}/t.pt", "--lr", "inf"],
    ["train", "lenet", "--out", "{tmp}/t.pt", "--lr", "nan"],
    ["train", "lenet", "--out", "{tmp}/t.pt", "--lr", "-0.1"],
    ["train", "lenet", "--out", "{tmp}/t.pt", "--epochs", "99999999"],
    ["train", "lenet", "--out", "{tmp}/t.pt", "--seed", "-1"],
    ["train", "lenet", "--out", "{tmp}/t.pt", "--select-fraction", "1"],
    ["train", "lenet", "--out", "{tmp}/t.pt", "--shift", "1e309"],
    ["train", "lenet", "--out", "{tmp}/t.pt", "--data", "{fifo}"],
    ["train", "lenet", "--out", "{tmp}/t.pt", "--modes", "{fifo}"],
    ["train", "{xnor}", "--out", "{tmp}/t.pt"],
    ["train", "lenet", "--out", "{tmp}/t.pt", "--device", "quantum"],
    ["train", "lenet", "--out", "{tmp}/t.pt", "--device", "cuda:7"],
    # layers
    ["layers", "demo:lenet", "--modes", "{fifo}"],
    ["layers", "demo:lenet", "--modes", "/dev/zero"],
    ["layers", "demo:lenet", "--modes", "{dir}"],
    ["layers", "{fifo}"],
    ["layers", "demo:lenet", "--modes", LONG_NAME],
    # bench: parse-time checks only
    ["bench", "--threads", "0"],
]  # fmt: skip


def _fill(argv: list[str], tmp: Path, samples: Samples, image: Path) -> list[str]:
    names = {"{xnor}": str(samples.xnor.path), "{img}": str(image), "{tmp}": str(tmp),
             "{fifo}": str(tmp / "fifo"), "{dir}": str(tmp / "dir")}  # fmt: skip
    filled = []
    for arg in argv:
        for key, value in names.items():
            arg = arg.replace(key, value)
        filled.append(arg)
    return filled


def _fifos(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if stat.S_ISFIFO(p.lstat().st_mode)]


@pytest.mark.parametrize("argv", ARGV_CASES, ids=lambda a: " ".join(a)[:70])
def test_bad_argument_vectors(
    argv: list[str], samples: Samples, case_dir: Path, image_path: Path, capsys: Any
) -> None:
    for name in ("fifo", "fifo.xnor", "fifo.html", "fifo.pt"):
        make_fifo(case_dir / name)
    (case_dir / "dir").mkdir()
    fifos = _fifos(case_dir)
    run_case(_fill(argv, case_dir, samples, image_path), capsys, case_dir, valid=False)
    assert _fifos(case_dir) == fifos  # every FIFO is still a FIFO, none read or replaced


@fuzz(25)
@given(
    topk=st.one_of(
        st.integers(-5, 1005).map(str), st.integers(-(2**70), 2**70).map(str), st.text(max_size=12)
    )
)
def test_predict_topk_values(samples: Samples, image_path: Path, capsys: Any, topk: str) -> None:
    folder = image_path.parent
    outcome = run_case(["predict", samples.xnor.path, image_path, "--json", f"--topk={topk}"],
                       capsys, folder)  # fmt: skip
    if outcome.code == 0:
        check_predictions(outcome, images=1, topk=min(int(topk), 10))


@fuzz(20)
@given(modes=st.text(st.characters(exclude_characters="/\x00"), max_size=100))
def test_modes_values(case_dir: Path, capsys: Any, modes: str) -> None:
    outcome = run_case(["layers", "demo:lenet", "--json", f"--modes={modes}"], capsys, case_dir)
    assert outcome.code == 2 or modes.strip().lower() in (
        "paper", "paper-bwn", "xnor", "bwn", "float"
    ), outcome.describe()  # fmt: skip
