"""``xnorlab report`` / ``export`` arguments are checked before any work (threads before torch
is touched, output paths and suffixes before a model loads); a report run shows its samples,
intervals and noise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xnorlab.cli.main import main


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["report", "demo:lenet-xnor", "--threads", "100000", "--out", "{tmp}/r.html"],
         "argument --threads: 100000 is outside 1..256"),
        (["report", "demo:lenet-xnor", "--threads", "0", "--out", "{tmp}/r.html"],
         "argument --threads: 0 is outside 1..256"),
        (["report", "demo:lenet-xnor", "--out", "{tmp}/r.pdf"], "use one of .html"),
        (["report", "demo:lenet-xnor", "--out", "{tmp}/no/such/r.md"], "does not exist"),
        (["report", "demo:lenet-xnor", "--out", "{tmp}"], "is a directory"),
        (["report", "demo:lenet-xnor", "--out", "{tmp}/r.md", "--limit", "0"],
         "argument --limit: 0 is outside 1.."),
        (["report", "demo:lenet-xnor", "--out", "{tmp}/r.md", "--calibration", "-3"],
         "argument --calibration: -3 is outside 1.."),
        (["report", "demo:lenet-xnor", "--out", "{tmp}/r.md", "--repeats", "0"],
         "argument --repeats: 0 is outside 1..1000"),
        (["export", "demo:lenet-xnor", "--out", "{tmp}/m.bin"], "use one of .xnor"),
        (["export", "demo:lenet-xnor", "--out", "{tmp}/no/such/m.xnor"], "does not exist"),
    ],
)  # fmt: skip
def test_bad_arguments_end_in_one_line_before_any_work(
    argv: list[str], phrase: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    threads = torch.get_num_threads()
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and phrase in err[0], err
    assert torch.get_num_threads() == threads  # --threads was refused before it was applied
    assert list(tmp_path.iterdir()) == []


def test_huge_thread_count_exits_2_without_a_crash(tmp_path: Path) -> None:
    """In a fresh process: torch.set_num_threads(100000) used to run first and crash."""
    out = tmp_path / "r.html"
    command = [sys.executable, "-m", "xnorlab.cli.main", "report", "demo:lenet-xnor",
               "--threads", "100000", "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "outside 1..256" in done.stderr
    assert not out.exists()


def test_report_shows_samples_intervals_and_noise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    code = main(["report", "demo:lenet-xnor", "--out", str(out), "--limit", "200",
                 "--calibration", "20", "--repeats", "3", "--quiet"])  # fmt: skip
    assert code == 0 and "wrote" in capsys.readouterr().out
    data = json.loads(out.read_text(encoding="utf-8"))
    header, totals = data["header"], data["totals"]
    # mnist5k's splits are sorted by class; both samples hold every class alike
    assert header["validation_sample"]["per_class"] == {str(d): 20 for d in range(10)}
    assert header["calibration_sample"]["per_class"] == {str(d): 2 for d in range(10)}
    assert totals["accuracy_config"]["n"] == 200
    assert totals["accuracy_drop"]["verdict"] in ("exceeds noise", "within noise")
    speedup = totals["speedup"]
    low, high = speedup["interval"]
    assert low <= speedup["median"] <= high
    assert speedup["noisy"] == (speedup["noise_reason"] is not None)
    if speedup["noisy"]:
        assert any(note.startswith("latency is noisy: ") for note in header["notes"])
    config_parts = sum(layer["latency_config_ms"] for layer in data["layers"])
    whole = config_parts + totals["latency_config_unattributed_ms"]
    assert whole == pytest.approx(totals["latency_config_ms"])
    conv2 = data["layers"][1]
    assert conv2["mode"] == "xnor" and conv2["restore_alone"]["candidate"]["n"] == 200
