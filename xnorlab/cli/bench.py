"""``xnorlab bench``: time the XNOR engine against torch float32 and int8 (issue 3, item 5).

Prints ResNet-18's 3x3 convs (or tiny shapes with ``--quick``), BWN linear 9216x4096 and the
whole resnet18 model, as Markdown tables (readable in a terminal) or JSON. glibc's malloc
settings (``MALLOC_ENV``) must be in the environment before the process starts, so the command
re-executes itself once with them unless ``--no-reexec`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from xnorlab.bench import (
    MALLOC_ENV,
    BenchConfig,
    BenchReport,
    ConvResult,
    SplitTiming,
    run_benchmark,
    target_checks,
    validate_config,
    validate_isas,
)
from xnorlab.bench.machine import RELEVANT_ENV
from xnorlab.cli import args as cli_args
from xnorlab.cli.main import run_subcommand
from xnorlab.common.atomic import atomic_write_text
from xnorlab.measure.timing import Timing

REEXEC_GUARD = "XNORLAB_BENCH_REEXEC"
ISA_CHOICES = ("scalar", "avx2", "avx512")


def _one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Make argument errors one line on stderr and exit 2 (argparse also prints the usage)."""

    def error(message: str) -> NoReturn:
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)

    parser.error = error  # type: ignore[method-assign]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _one_line_errors(parser)
    _add_what_to_run(parser)
    _add_output_options(parser)


def _add_what_to_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=cli_args.threads,
        nargs="+",
        default=[1, 2],
        metavar="N",
        help="thread counts to run, same on both sides (default: 1 2)",
    )
    parser.add_argument(
        "--batch",
        type=cli_args.batch_size,
        nargs="+",
        default=[1, 8],
        metavar="B",
        help="batch sizes of the conv shapes (default: 1 8)",
    )
    parser.add_argument(
        "--isa",
        nargs="+",
        choices=ISA_CHOICES,
        default=[],
        metavar="ISA",
        help="ISAs of the native engine to run (default: the engine's choice, "
        "plus avx2 forced); one of: " + ", ".join(ISA_CHOICES),
    )
    parser.add_argument(
        "--scaling",
        choices=("kmap", "scalar", "none"),
        default="kmap",
        help="XNOR input scaling (default: kmap, the paper's)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny shapes and few runs (checks the harness; not a speed figure)",
    )


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--save-json",
        type=cli_args.output_file((".json",)),
        metavar="FILE.json",
        help="also write the JSON report to this file",
    )
    parser.add_argument(
        "--no-reexec",
        action="store_true",
        help="do not re-run with the malloc settings (timings may include page faults)",
    )


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The benchmark configuration the parsed arguments ask for (validated)."""
    fields = {"threads": tuple(args.threads), "batches": tuple(args.batch),
              "isas": tuple(args.isa), "scaling": args.scaling}  # fmt: skip
    config = BenchConfig.quick_config(**fields) if args.quick else BenchConfig(**fields)
    validate_config(config)
    return config


def argv_from_args(args: argparse.Namespace) -> list[str]:
    """Rebuild the command line of ``args`` (used to re-execute with the malloc settings)."""
    argv = ["--threads", *map(str, args.threads), "--batch", *map(str, args.batch)]
    argv += ["--isa", *args.isa] if args.isa else []
    argv += ["--scaling", args.scaling]
    argv += ["--json"] if args.json else []
    argv += [f"--save-json={args.save_json}"] if args.save_json else []  # '=': it may start with -
    argv += ["--quick"] if args.quick else []
    return argv


def _reexec_with_malloc_env(args: argparse.Namespace) -> None:
    """Replace this process by the same command with ``MALLOC_ENV`` set (once)."""
    if args.no_reexec or os.environ.get(REEXEC_GUARD):
        return
    if all(os.environ.get(name) == value for name, value in MALLOC_ENV.items()):
        return
    env = dict(os.environ) | MALLOC_ENV | {REEXEC_GUARD: "1"}
    command = [sys.executable, "-m", "xnorlab.cli.main", "bench", *argv_from_args(args)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    validate_isas(config)
    _reexec_with_malloc_env(args)
    if not args.json:
        print("measuring... (progress on stderr)", file=sys.stderr)
    report = run_benchmark(config, progress=lambda line: print(f"  {line}", file=sys.stderr))
    warning = report.machine.busy_warning
    if warning:
        print(f"xnorlab bench: warning: {warning}", file=sys.stderr)
    payload = report.to_dict()
    payload["targets"] = [vars(check) for check in target_checks(report)]
    if args.save_json:
        _write_json(Path(args.save_json), payload)
    print(json.dumps(payload, indent=2) if args.json else render_markdown(report))
    return 0


def _write_json(path: Path, payload: dict[str, object]) -> None:
    """Atomically, as every output: an interrupted write leaves the old file or none."""
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


# --------------------------------------------------------------------------- rendering


def _ms(timing: Timing | None) -> str:
    return "-" if timing is None else f"{timing.median_s * 1e3:.3f}"


def _spread(timing: Timing | None) -> str:
    return "-" if timing is None else f"{timing.min_s * 1e3:.3f}-{timing.max_s * 1e3:.3f}"


def _sci(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}"


def _num(value: float | None, fmt: str = ".2f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{fmt}}{suffix}"


def _split_text(split: SplitTiming | None) -> str:
    if split is None or split.parts_s <= 0:
        return "n/a (no engine profiler)"
    total_s = split.parts_s
    parts = (("pack", split.pack_s), ("pop", split.popcount_s), ("scale", split.scale_s),
             ("other", split.other_s), ("call", split.call_s))  # fmt: skip
    return " ".join(f"{name} {100 * seconds / total_s:.0f}%" for name, seconds in parts)


def _model_split(split: SplitTiming | None) -> str:
    """Native kernels (all calls of one forward) against the rest of the model in torch."""
    if split is None:
        return "n/a"
    native_s = split.pack_s + split.popcount_s + split.scale_s + split.other_s
    return (
        f"native {native_s * 1e3:.2f} (pack {split.pack_s * 1e3:.2f}, popcount "
        f"{split.popcount_s * 1e3:.2f}) + torch rest {split.call_s * 1e3:.2f}"
    )


def _isas_run(report: BenchReport) -> str:
    default = report.machine.engine_info.get("isa")
    isas = dict.fromkeys(row.isa for row in report.convs)
    return ", ".join(f"{isa} ({'default' if isa == default else 'forced'})" for isa in isas) or "-"


def _env_names() -> str:
    return "/".join(RELEVANT_ENV[:3]) + "/... set"


def render_header(report: BenchReport) -> list[str]:
    """The header lines: machine, versions, engine, ceilings, malloc, load."""
    machine = report.machine
    ceilings = report.ceilings
    rates = ", ".join(f"{name} {rate:.0f}" for name, rate in ceilings.rates_gmac.items())
    malloc = ", ".join(f"{name}={value}" for name, value in machine.malloc_env.items())
    load_end = machine.load_end or machine.load_start
    return [
        f"# xnorlab bench ({'quick' if report.config.quick else 'full'}) {machine.date_utc}",
        "",
        f"- CPU: {machine.cpu_model}, {machine.logical_cpus} logical CPUs; SIMD: "
        f"{' '.join(machine.cpu_simd_flags)}",
        f"- torch {machine.torch_version} (CPU capability {machine.torch_cpu_capability}); "
        f"int8 engine: {machine.int8_engine or 'none'}; Python {machine.python_version}",
        f"- XNOR engine: {machine.engine}; ISAs run: {_isas_run(report)}; "
        f"info: {machine.engine_info or '-'}",
        f"- threads: {list(report.config.threads)} (torch.set_num_threads = engine threads); "
        f"scaling {report.config.scaling}, zero padding",
        f"- ceilings per core (G MAC/s, binary MAC for popcount): {rates}; {ceilings.source}",
        f"- malloc: {malloc}; other settings: "
        f"{', '.join(f'{k}={v}' for k, v in machine.env.items()) or 'none of ' + _env_names()}",
        f"- load average start {machine.load_start[0]:.2f}, end {load_end[0]:.2f}; "
        f"process nice {machine.nice}, autogroup {machine.autogroup or '-'}",
    ]


def _conv_line(row: ConvResult) -> str:
    m = row.metrics()
    base = row.baseline
    return (
        f"| {row.shape.name} | {row.batch} | {row.threads} | {row.isa} | "
        f"{_ms(base.float_best)} ({base.float_best_layout}; {_spread(base.float_best)}) | "
        f"{_ms(base.int8)} ({_spread(base.int8)}) | "
        f"{_ms(base.int8_float_io)} | {_ms(row.xnor)} ({_spread(row.xnor)}) | "
        f"{_num(m['speedup_vs_float'])} ({_num(m['speedup_vs_float_of_mins'])}) | "
        f"{_num(m['speedup_vs_int8'])} | "
        f"{_num(m['gops_float'], '.0f')} | {_num(m['gops_xnor'], '.0f')} | "
        f"{_num(m['ceiling_fraction'], '.0%')} | {_num(m['popcount_phase_ceiling_fraction'], '.0%')}"
        f" | {_num(m['loop_ceiling_fraction'], '.0%')}"
        f" | {_split_text(row.split)} | {_sci(row.max_rel_diff_vs_reference)} |"
    )


def render_convs(report: BenchReport) -> list[str]:
    """The conv table: one row per shape, batch, threads and ISA."""
    lines = [
        "", "## Conv 3x3 stride 1 pad 1 (times in ms: median (min-max))", "",
        "| shape | batch | thr | isa | float32 best (layout; min-max) | int8 (min-max) | int8 f-io | xnor (min-max) | "
        "x float (of mins) | x int8 | GOP/s float | GOP/s xnor | ceil | pop-phase ceil | loop ceil | "
        "xnor split | rel diff vs ref |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    return lines + [_conv_line(row) for row in report.convs]


def render_rest(report: BenchReport) -> list[str]:
    """Linear and model tables, target checks and notes."""
    lines = ["", "## BWN linear (batch 1; ms)", "",
             "| in x out | thr | isa | float32 | bwn | x float | packed bytes | bwn split | "
             "rel diff vs ref |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in report.linears:
        lines.append(
            f"| {row.in_features}x{row.out_features} | {row.threads} | {row.isa} | "
            f"{_ms(row.float_linear)} | {_ms(row.bwn)} | "
            f"{_num(row.metrics()['speedup_vs_float'])} | {row.packed_weight_bytes or '-'} | "
            f"{_split_text(row.split)} | {_sci(row.max_rel_diff_vs_reference)} |"
        )
    lines += ["", "## Whole model (batch 1; ms; engine = binarized model through the engine; "
              "deploy = xnorlab.deploy of it, fused)", "",
              "| model | input | thr | isa | via | float32 NCHW | float32 CL | engine NCHW | "
              "engine CL | deploy | x float (NCHW / CL / deploy) | native calls | "
              "engine CL split | max rel diff vs simulation |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for m in report.models:
        metrics = m.metrics()
        lines.append(
            f"| {m.model} {m.preset}/{m.scaling} | {'x'.join(map(str, m.input_shape))} | "
            f"{m.threads} | {m.isa} | {m.backend} | {_ms(m.float_nchw)} | "
            f"{_ms(m.float_channels_last)} | {_ms(m.engine_time)} | "
            f"{_ms(m.engine_channels_last)} | {_ms(m.deployed)} | "
            f"{_num(metrics['speedup_vs_float'])} / "
            f"{_num(metrics['speedup_channels_last_vs_float'])} / "
            f"{_num(metrics['speedup_deployed_vs_float'])} | {m.native_calls_per_forward} | "
            f"{_model_split(m.split_channels_last)} | {m.max_rel_diff_vs_simulation:.2e} |"
        )
    lines += render_thread_scaling(report)
    lines += ["", "## Targets (issue 3)", ""]
    for check in target_checks(report):
        verdict = {True: "MET", False: "MISSED", None: "n/a"}[check.met]
        lines.append(f"- {verdict}: {check.name}: {check.detail}")
    lines += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    return lines


def render_thread_scaling(report: BenchReport) -> list[str]:
    """1 vs N engine threads on the XNOR conv, timed interleaved (empty when not measured)."""
    if not report.thread_scaling:
        return []
    lines = ["", "## Thread scaling (XNOR conv; 1 and N threads timed interleaved; ms)", "",
             "| shape | batch | isa | 1 thread (min-max) | N threads (min-max) | N | speedup "
             "(of mins) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in report.thread_scaling:
        m = row.metrics()
        lines.append(
            f"| {row.shape.name} | {row.batch} | {row.isa} | {_ms(row.one_thread)} "
            f"({_spread(row.one_thread)}) | {_ms(row.many_threads)} ({_spread(row.many_threads)})"
            f" | {row.threads} | {_num(m['speedup'])} ({_num(m['speedup_of_mins'])}) |"
        )
    return lines


def render_markdown(report: BenchReport) -> str:
    """The whole report as Markdown (header, tables, targets, notes)."""
    return "\n".join(render_header(report) + render_convs(report) + render_rest(report))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``benchmarks/bench_kernels.py`` (same options as ``xnorlab bench``)."""
    return run_subcommand("bench", list(sys.argv[1:] if argv is None else argv))
