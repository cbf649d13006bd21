"""`xnorlab bench`: the harness runs end to end in --quick mode and its errors are one line.

The quick run checks the JSON's structure and internal consistency, never a speed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from xnorlab.bench import (
    MALLOC_ENV,
    QUICK_PLAN,
    QUICK_SHAPES,
    BaselineTimings,
    ConvResult,
    ConvShape,
    Engine,
    LinearResult,
    MachineInfo,
    ModelResult,
    SplitTiming,
    measure_thread_scaling,
)
from xnorlab.bench import run as run_module
from xnorlab.cli import bench as bench_cli
from xnorlab.cli.main import main
from xnorlab.measure.timing import Timing

TIMING_KEYS = {f.name for f in dataclasses.fields(Timing)}
CONV_METRICS = {
    "speedup_vs_float", "speedup_vs_float_of_mins", "speedup_vs_int8", "speedup_vs_int8_float_io", "gops_float",
    "gops_int8", "gops_xnor", "ceiling_fraction", "popcount_phase_ceiling_fraction",
    "loop_ceiling_fraction",
}  # fmt: skip


def names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def check_timing(data: dict[str, Any]) -> None:
    assert set(data) == TIMING_KEYS
    assert 0 < data["min_s"] <= data["median_s"] <= data["max_s"] and data["runs"] >= 3


def check_split(data: dict[str, Any] | None) -> None:
    if data is not None:  # None only when the engine has no profiler (reference backend)
        assert set(data) == names(SplitTiming) and all(v >= 0 for v in data.values())


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    env.pop("XNORLAB_BENCH_REEXEC", None)
    saved = tmp_path_factory.mktemp("bench") / "quick.json"
    command = [sys.executable, "-m", "xnorlab.cli.main", "bench", "--quick", "--json",
               "--threads", "1", "--batch", "1", "2", "--save-json", str(saved)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    assert json.loads(saved.read_text()) == data  # --save-json writes the same report
    return data


@pytest.mark.slow
def test_quick_json_has_every_conv_field(quick_report: dict[str, Any]) -> None:
    convs = quick_report["convs"]
    assert {(row["shape"]["name"], row["batch"]) for row in convs} == {
        (name, batch) for name in ("16@8x8", "70@5x5") for batch in (1, 2)
    }
    for row in convs:
        assert set(row) == names(ConvResult) | {"macs", "metrics"}
        assert set(row["shape"]) == names(ConvShape)
        assert set(row["baseline"]) == names(BaselineTimings) | {"float_best_layout"}
        for key in ("float_nchw", "float_channels_last", "xnor"):
            check_timing(row[key] if key == "xnor" else row["baseline"][key])
        check_split(row["split"])
        assert set(row["metrics"]) == CONV_METRICS
        shape = row["shape"]
        macs = row["batch"] * shape["size"] ** 2 * shape["in_channels"] * shape["out_channels"] * 9
        assert row["macs"] == macs
        xnor_s = row["xnor"]["median_s"]
        assert row["metrics"]["gops_xnor"] == pytest.approx(2 * macs / xnor_s / 1e9)
        best = min(row["baseline"]["float_nchw"]["median_s"],
                   row["baseline"]["float_channels_last"]["median_s"])  # fmt: skip
        assert row["metrics"]["speedup_vs_float"] == pytest.approx(best / xnor_s)
        assert row["max_rel_diff_vs_reference"] < 1e-4  # the timed conv computes the right thing
        assert row["loop_gmac"] > 0  # the micro-kernel alone ran (native engine)


@pytest.mark.slow
def test_quick_json_machine_linear_model_targets(quick_report: dict[str, Any]) -> None:
    machine = quick_report["machine"]
    assert set(machine) == names(MachineInfo) | {"busy_warning"}
    assert machine["malloc_env"] == MALLOC_ENV  # the command re-executed itself with them
    assert machine["cpu_model"] and machine["torch_version"] and len(machine["load_end"]) == 3
    assert quick_report["config"]["quick"] is True and quick_report["config"]["threads"] == [1]
    assert quick_report["ceilings"]["rates_gmac"] and quick_report["ceilings"]["source"]
    if shutil.which("cc") or shutil.which("gcc"):  # benchmarks/ceilings.c is found and built
        assert quick_report["ceilings"]["source"].startswith("measured here")
    isas = {row["isa"] for row in quick_report["convs"]}
    linears = quick_report["linears"]
    assert {row["isa"] for row in linears} == isas and len(linears) == len(isas)
    for linear in linears:
        assert set(linear) == names(LinearResult) | {"metrics"}
        check_timing(linear["float_linear"])
        check_timing(linear["bwn"])
        check_split(linear["split"])
        assert linear["max_rel_diff_vs_reference"] < 1e-4
    (model,) = quick_report["models"]
    assert set(model) == names(ModelResult) | {"metrics"}
    assert model["input_shape"] == [1, 3, 32, 32] and model["preset"] == "paper"
    assert model["max_rel_diff_vs_simulation"] < 1e-3  # the engine computes the same model
    assert len(quick_report["targets"]) == 9
    assert all(set(t) == {"name", "met", "detail"} for t in quick_report["targets"])
    assert any("XNOR engine:" in note for note in quick_report["notes"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--threads", "0"], "argument --threads: 0 is outside 1..256"),
        (["--threads", "100000"], "argument --threads: 100000 is outside 1..256"),
        (["--batch", "x"], "argument --batch: 'x' is not a whole number"),
        (["--isa", "sse9"], "argument --isa: invalid choice: 'sse9'"),
        (["--scaling", "beta"], "argument --scaling: invalid choice: 'beta'"),
        (["--batch", "4096"], "batch sizes must be in 1..1024"),
        (["--save-json", "/nonexistent-dir/report.json"], "folder /nonexistent-dir does not exist"),
        (["--save-json", "/tmp/report.txt"], "use one of .json"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(["bench", "--no-reexec", *argv])
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


class FakeEngine:
    """Stands in for the engine: native with only the scalar ISA, or the reference."""

    def __init__(self, native: bool) -> None:
        self.is_native = native
        self.label = "native" if native else "reference (test)"

    def supported_isas(self) -> list[str]:
        return ["scalar"] if self.is_native else []

    def active_isa(self) -> str:
        return "scalar" if self.is_native else "reference"


@pytest.mark.parametrize(
    ("native", "message"),
    [(True, "ISA 'avx512' is not supported here (supported: scalar)"),
     (False, "--isa needs the native engine, but the XNOR engine is reference (test)")],
)  # fmt: skip
def test_unavailable_isa_is_one_line(
    native: bool, message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(run_module, "Engine", lambda: FakeEngine(native))
    assert main(["bench", "--no-reexec", "--isa", "avx512"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"xnorlab bench: error: {message}"]


@pytest.mark.slow
def test_quick_run_on_the_forced_reference_engine() -> None:
    """Without the native engine (XNORLAB_KERNEL=reference) the harness still runs and says so."""
    env = dict(os.environ) | {"XNORLAB_KERNEL": "reference"}
    command = [sys.executable, "-m", "xnorlab.cli.main", "bench", "--quick", "--json",
               "--threads", "1", "--batch", "1", "--no-reexec"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {row["isa"] for row in data["convs"]} == {"reference"}
    assert data["machine"]["engine"].startswith("reference")
    assert data["models"][0]["backend"] == "torch simulation"
    assert data["models"][0]["native_calls_per_forward"] == 0
    assert any("malloc" in note.lower() or "MALLOC" in note for note in data["notes"])


def test_thread_scaling_times_both_thread_counts_and_restores_the_count() -> None:
    engine = Engine()
    if not engine.is_native:
        pytest.fail("the native engine must be built for the benchmark tests")
    before = engine.get_threads()
    try:
        engine.set_threads(3)  # neither count it measures
        row = measure_thread_scaling(engine, QUICK_SHAPES[0], 2, engine.active_isa(), 2, "kmap",
                                     QUICK_PLAN)  # fmt: skip
        assert engine.get_threads() == 3
    finally:
        engine.set_threads(before or 1)
    assert row.one_thread.runs >= QUICK_PLAN.min_runs and row.many_threads.runs >= 3
    assert 0 < row.one_thread.min_s <= row.one_thread.median_s
    assert row.metrics()["speedup"] == pytest.approx(
        row.one_thread.median_s / row.many_threads.median_s
    )


@pytest.mark.slow
def test_markdown_model_table_has_the_deploy_column() -> None:
    command = [sys.executable, "-m", "xnorlab.cli.main", "bench", "--quick", "--threads", "1",
               "--batch", "1", "--no-reexec"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    title = lines.index(next(line for line in lines if line.startswith("## Whole model")))
    header, rule, row = lines[title + 2 : title + 5]
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert "deploy" in columns and "x float (NCHW / CL / deploy)" in columns
    assert rule.count("---") == len(columns)
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert len(cells) == len(columns)
    deploy_ms = float(cells[columns.index("deploy")])
    speedups = [float(v) for v in cells[columns.index("x float (NCHW / CL / deploy)")].split("/")]
    float_ms = min(float(cells[columns.index("float32 NCHW")]),
                   float(cells[columns.index("float32 CL")]))  # fmt: skip
    assert deploy_ms > 0 and len(speedups) == 3
    assert speedups[2] == pytest.approx(float_ms / deploy_ms, rel=0.02, abs=0.01)


def test_the_reexec_command_line_keeps_a_save_path_that_starts_with_a_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser()
    bench_cli.add_arguments(parser)
    args = parser.parse_args(["--save-json=-x.json", "--threads", "1", "--quick"])
    again = parser.parse_args(bench_cli.argv_from_args(args))
    assert again.save_json == args.save_json == Path("-x.json")
    assert vars(again) == {**vars(args), "no_reexec": again.no_reexec}
