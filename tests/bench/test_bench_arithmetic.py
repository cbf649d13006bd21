"""Benchmark arithmetic on injected timings: speedups, GOP/s, ceiling fractions, targets.

Nothing here measures speed; every timing is made up so that the expected figures can be
computed by hand.
"""

from __future__ import annotations

import dataclasses

import pytest

from xnorlab.bench import (
    BaselineTimings,
    BenchConfig,
    BenchReport,
    Ceilings,
    ConvResult,
    ConvShape,
    LinearResult,
    MachineInfo,
    ModelResult,
    SplitTiming,
    ThreadScalingResult,
    ceiling_fraction,
    gops,
    target_checks,
)
from xnorlab.cli.bench import render_markdown
from xnorlab.measure.timing import Timing

SHAPE = ConvShape("64@56x56", 64, 64, 56)
MACS_64_56 = 56 * 56 * 64 * 64 * 9  # batch 1, pad 1 keeps 56x56


def ms(value: float) -> Timing:
    return Timing(value * 1e-3, value * 1e-3 * 0.9, value * 1e-3 * 1.2, 20)


def conv_row(
    xnor_ms: float,
    *,
    batch: int = 1,
    threads: int = 1,
    isa: str = "avx512",
    split: SplitTiming | None = None,
    loop_gmac: float | None = None,
) -> ConvResult:
    # baselines grow with the batch: float32 NCHW 2 ms, channels_last 1.5 ms, int8 0.6 ms
    baseline = BaselineTimings(ms(2.0 * batch), ms(1.5 * batch), ms(0.6 * batch), ms(0.8 * batch))
    return ConvResult(SHAPE, batch, threads, isa, "kmap", baseline, ms(xnor_ms), split, 1000.0,
                      loop_gmac=loop_gmac)  # fmt: skip


def machine(load: float = 0.1) -> MachineInfo:
    return MachineInfo(
        cpu_model="Test CPU", logical_cpus=2, cpu_simd_flags=("avx2",), torch_version="2.x",
        torch_cpu_capability="AVX512", int8_engine="x86", engine="native", engine_info={},
        python_version="3.11", date_utc="2026-01-01 00:00:00 UTC",
        malloc_env={"MALLOC_MMAP_THRESHOLD_": "33554432"}, load_start=(load, 0.0, 0.0),
    )  # fmt: skip


def test_shape_macs_and_output_size() -> None:
    assert SHAPE.out_size == 56
    assert SHAPE.macs(1) == MACS_64_56 == 115_605_504
    assert SHAPE.macs(8) == 8 * MACS_64_56
    assert ConvShape("s2", 3, 5, 9, kernel=3, stride=2, padding=0).out_size == 4


def test_formulas_on_hand_values() -> None:
    assert gops(1_000_000_000, 0.5) == pytest.approx(4.0)  # 2 ops per MAC
    assert ceiling_fraction(500_000_000, 0.001, 1000.0, 2) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        ceiling_fraction(1, 1.0, 0.0, 1)


def test_conv_metrics_on_injected_timings() -> None:
    split = SplitTiming(pack_s=20e-6, popcount_s=100e-6, scale_s=10e-6, other_s=5e-6, call_s=15e-6)
    metrics = conv_row(0.15, threads=2, split=split).metrics()
    # float best = channels_last 1.5 ms; int8 0.6 ms; xnor 0.15 ms
    assert metrics["speedup_vs_float"] == pytest.approx(10.0)
    assert metrics["speedup_vs_int8"] == pytest.approx(4.0)
    assert metrics["speedup_vs_float_of_mins"] == pytest.approx(10.0)  # 1.35 ms / 0.135 ms
    assert metrics["speedup_vs_int8_float_io"] == pytest.approx(0.8 / 0.15)
    assert metrics["gops_float"] == pytest.approx(2 * 115_605_504 / 1.5e-3 / 1e9)
    assert metrics["gops_int8"] == pytest.approx(2 * 115_605_504 / 0.6e-3 / 1e9)
    assert metrics["gops_xnor"] == pytest.approx(1541.4067, rel=1e-6)
    # 115.6 M bMAC in 0.15 ms against 1000 G bMAC/s per core x 2 threads
    assert metrics["ceiling_fraction"] == pytest.approx(0.385352, rel=1e-5)
    assert metrics["popcount_phase_ceiling_fraction"] == pytest.approx(0.578028, rel=1e-5)


def test_best_float_layout_is_the_lower_median() -> None:
    base = BaselineTimings(ms(1.0), ms(1.5), None, None)
    assert base.float_best_layout == "nchw" and base.float_best.median_s == pytest.approx(1e-3)
    row = ConvResult(SHAPE, 1, 1, "avx2", "none", base, ms(0.5), None, 300.0)
    metrics = row.metrics()
    assert metrics["speedup_vs_float"] == pytest.approx(2.0)
    assert metrics["speedup_vs_int8"] is None and metrics["popcount_phase_ceiling_fraction"] is None


def test_ceiling_per_isa() -> None:
    ceilings = Ceilings({"popcount_avx512": 1200.0, "popcount_avx2": 400.0,
                         "popcount_scalar": 250.0, "fma_fp32_512": 58.0}, "test")  # fmt: skip
    assert ceilings.popcount_for("avx512") == 1200.0
    assert ceilings.popcount_for("avx2") == 400.0
    assert ceilings.popcount_for("scalar") == 250.0
    assert ceilings.popcount_for("reference") == 1200.0  # the machine's best
    assert ceilings.fma_gmac == 58.0
    no_lut = Ceilings({"popcount_scalar": 250.0}, "test")
    assert no_lut.popcount_for("avx2") == 250.0


def report_with(convs: list[ConvResult], bwn_ms: float, model_ms: float) -> BenchReport:
    linear = LinearResult(9216, 4096, 1, 1, "avx512", ms(12.0), ms(bwn_ms), None, 9216 * 4096 * 4,
                          9216 * 4096 // 8)  # fmt: skip
    slow_avx2 = LinearResult(9216, 4096, 1, 1, "avx2", ms(12.0), ms(6.0), None, 1, 1)  # 2x
    model = ModelResult("resnet18", (1, 3, 224, 224), "paper", "kmap", 1, "avx512", "native",
                        ms(40.0), ms(36.0), ms(2 * model_ms), ms(model_ms), None, None, 19,
                        1e-6, ms(4.5))  # fmt: skip
    ceilings = Ceilings({"popcount_avx512": 1000.0}, "test")
    return BenchReport(
        machine(), ceilings, BenchConfig(), convs, [linear, slow_avx2], [model], ["a note"]
    )


def test_targets_met_and_missed() -> None:
    split = SplitTiming(0.0, 0.12e-3, 0.0, 0.0, 0.0)  # 115.6 M bMAC / 0.12 ms = 96% of 1000 G
    convs = [
        conv_row(0.15, split=split, loop_gmac=850.0),  # 10x float, 4x int8, loop at 85%
        conv_row(8 * 0.15, batch=8, threads=1, split=split, loop_gmac=850.0),
        conv_row(8 * 0.15 / 1.9, batch=8, threads=2, split=split, loop_gmac=850.0),
        conv_row(0.5, isa="avx2"),  # 3x float; not part of the main-ISA checks
    ]
    good = {c.name.split(" (")[0]: c for c in target_checks(report_with(convs, 3.0, 12.0))}
    assert good["XNOR conv >= 8x torch float32"].met is True
    assert "worst 10.00" in good["XNOR conv >= 8x torch float32"].detail
    assert good["XNOR conv >= 2.5x torch int8"].met is True
    assert good["popcount phase >= 80% of the ceiling"].met is True
    assert good["bare popcount loop >= 80% of the ceiling"].met is True
    assert "worst 0.85" in good["bare popcount loop >= 80% of the ceiling"].detail
    assert good["AVX2 forced >= 2.5x torch float32"].met is True
    assert good["2 threads >= 1.8x 1 thread at batch 8"].met is True
    assert "worst 1.90" in good["2 threads >= 1.8x 1 thread at batch 8"].detail
    assert (
        good["BWN linear >= 4x torch float32"].met is True
    )  # 12 / 3 on avx512; the 2x avx2 row is not the target
    assert good["whole model >= 3x float PyTorch"].met is True  # 36 / 12 (channels_last)

    slow = [conv_row(0.15, loop_gmac=790.0), conv_row(0.25, threads=2)]  # 6x float at 2 threads
    bad = {c.name.split(" (")[0]: c for c in target_checks(report_with(slow, 4.0, 13.0))}
    assert bad["XNOR conv >= 8x torch float32"].met is False
    assert (
        "worst 6.00 (goal 8.0) at 64@56x56 b1 t2 avx512"
        in bad["XNOR conv >= 8x torch float32"].detail
    )
    assert bad["popcount phase >= 80% of the ceiling"].met is None  # no profiler split
    assert bad["bare popcount loop >= 80% of the ceiling"].met is False  # 790 of 1000 G/s
    assert bad["AVX2 forced >= 2.5x torch float32"].met is None
    assert bad["2 threads >= 1.8x 1 thread at batch 8"].met is None
    assert bad["BWN linear >= 4x torch float32"].met is False  # 3x
    assert bad["whole model >= 3x float PyTorch"].met is False  # 36 / 13 (channels_last)


def test_packed_weight_size_bound() -> None:
    def row(packed: int | None) -> ConvResult:
        return dataclasses.replace(conv_row(0.15), packed_weight_bytes=packed)

    assert row(None).packed_bytes_bound == 64 * 3 * 3 * 1 * 8  # C_in 64 = one word per tap
    wide = dataclasses.replace(row(None), shape=ConvShape("65ch", 65, 10, 8))
    assert wide.packed_bytes_bound == 10 * 9 * 2 * 8  # 65 channels need two words

    def verdict(packed: int | None) -> bool | None:
        checks = target_checks(report_with([row(packed)], 3.0, 12.0))
        return next(c.met for c in checks if c.name.startswith("packed conv weights"))

    assert verdict(4608) is True
    assert verdict(4609) is False
    assert verdict(None) is None


def test_busy_machine_is_flagged() -> None:
    assert machine(load=0.1).busy_warning is None
    assert "machine busy" in (machine(load=1.7).busy_warning or "")


def test_markdown_renders_every_row_with_its_figures() -> None:
    split = SplitTiming(20e-6, 100e-6, 10e-6, 5e-6, 15e-6)
    text = render_markdown(report_with([conv_row(0.15, split=split, loop_gmac=870.0)], 3.0, 12.0))
    row = next(line for line in text.splitlines() if line.startswith("| 64@56x56"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:4] == ["64@56x56", "1", "1", "avx512"]
    assert cells[4] == "1.500 (channels_last; 1.350-1.800)" and cells[5] == "0.600 (0.540-0.720)"
    assert cells[8:10] == ["10.00 (10.00)", "4.00"]
    assert cells[13:15] == ["116%", "87%"]  # pop: 115.6 M bMAC / 0.1 ms of 1000 G; loop 870
    assert cells[15] == "pack 13% pop 67% scale 7% other 3% call 10%"
    assert "| 9216x4096 | 1 | avx512 | 12.000 | 3.000 | 4.00 |" in text
    assert "- MET: BWN linear >= 4x torch float32 (avx512): worst 4.00" in text
    assert "CPU: Test CPU" in text and "- a note" in text
    # float best 36 ms: 36/24, 36/12 and 36/4.5 (the deployed model)
    assert "| 40.000 | 36.000 | 24.000 | 12.000 | 4.500 | 1.50 / 3.00 / 8.00 | 19 |" in text


def test_thread_scaling_check_prefers_the_interleaved_measurement() -> None:
    """Rows of 1 and 2 threads measured apart give 1.5x; the interleaved pair gives 1.9x."""
    convs = [conv_row(1.5, batch=8, threads=1), conv_row(1.0, batch=8, threads=2)]
    apart = report_with(convs, 3.0, 12.0)

    def scaling_check(report: BenchReport) -> tuple[bool | None, str]:
        check = next(c for c in target_checks(report) if c.name.startswith("2 threads"))
        return check.met, check.detail

    met, detail = scaling_check(apart)
    assert met is False and "worst 1.50 at 64@56x56 (avx512)" in detail
    pair = ThreadScalingResult(SHAPE, 8, "avx512", "kmap", 2, ms(1.9), ms(1.0))
    interleaved = dataclasses.replace(apart, thread_scaling=[pair])
    met, detail = scaling_check(interleaved)
    assert met is True and "worst 1.90" in detail and "timed interleaved" in detail
    assert pair.metrics()["speedup_of_mins"] == pytest.approx(1.9)
    text = render_markdown(interleaved)
    assert "| 64@56x56 | 8 | avx512 | 1.900 (1.710-2.280) | 1.000 (0.900-1.200) | 2 | 1.90" in text
