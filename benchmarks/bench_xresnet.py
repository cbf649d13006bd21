"""Whole-network batch-1 inference of the binary ResNet-18 (``xresnet18``, paper preset) through
``xnorlab.deploy`` against the same network in float PyTorch.

One process, interleaved A/B rounds (``xnorlab.measure.timing.interleaved_samples``), the same
thread count for torch and the engine; the speed-up is the median of the per-round ratios with
its interval (``RatioEstimate``); the deployed output is checked against the torch simulation.
Usage (from the repository root)::

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \\
        .venv/bin/python benchmarks/bench_xresnet.py --threads 1 2 [--without +bit-outputs]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
from unittest import mock

import torch
from torch import Tensor, nn

import xnorlab
from xnorlab import engine
from xnorlab.measure.machine import load_note, set_threads
from xnorlab.measure.timing import RatioEstimate, RunPlan, Timing, interleaved_samples
from xnorlab.models.zoo import build_arch
from xnorlab.runtime.deploy import deploy_report


def build(seed: int = 0) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(float, binarized simulation, deployed) xresnet18s with the same weights; the
    BatchNorms get non-trivial running statistics so folding them is exercised."""
    torch.manual_seed(seed)
    flt = build_arch("xresnet18").eval()
    for module in flt.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    binary = copy.deepcopy(flt)
    xnorlab.binarize_model(binary, "paper")
    return flt, binary, xnorlab.deploy(binary)


# What ``--without`` switches off in a second deploy, timed against the default one: the
# function of xnorlab.runtime.deploy it replaces, and the replacement (which finds nothing to
# do). "+bit-outputs" instead switches deploy's optional bit outputs on.
WITHOUT = {
    "prologues": ("_prologue_conv", lambda *_args: None),  # BNs before XNOR convs: multiply-adds
    "engine-pool": ("_pool_graph", lambda *_args: []),  # torch's max pool
    "chains": ("_chain_graph", lambda *_args: ([], 0)),  # one engine call per fused conv
    "+bit-outputs": None,  # conv outputs handed over packed (deploy(..., bit_outputs=True))
}


def deploy_without(binary: nn.Module, parts: list[str]) -> nn.Module:
    """``binary`` deployed with the ``WITHOUT`` parts named in ``parts`` switched off (or,
    for "+bit-outputs", on)."""
    with contextlib.ExitStack() as stack:
        for part in parts:
            patch = WITHOUT[part]
            if patch is not None:
                name, replacement = patch
                stack.enter_context(mock.patch(f"xnorlab.runtime.deploy.{name}", replacement))
        return xnorlab.deploy(binary, bit_outputs="+bit-outputs" in parts)


def engine_time(deployed: nn.Module, x: Tensor, calls: int = 20) -> tuple[float, int]:
    """Median per forward of the engine calls' own time (s) and the number of calls."""
    totals, count = [], 0
    for _ in range(calls):
        with engine.profile() as records:
            deployed(x)
        totals.append(sum(r.total_s for r in records))
        count = len(records)
    totals.sort()
    return totals[len(totals) // 2], count


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--min-runs", type=int, default=40)
    parser.add_argument(
        "--without", nargs="+", choices=sorted(WITHOUT), default=[],
        help="also time a deploy with these parts switched off, against the full deploy",
    )  # fmt: skip
    args = parser.parse_args()
    flt, binary, deployed = build()
    x = torch.randn(1, 3, 224, 224)
    # Each comparison is its own two-op interleave: a third op in the rounds (the long float
    # forward) biases the other two by their place in the round (RESULTS.md, session 6).
    pairs = [("float", lambda: flt(x))]
    partial = deploy_without(binary, args.without) if args.without else None
    if partial is not None:
        name = "deploy " + ", ".join(
            f"with {part[1:]}" if part.startswith("+") else f"without {part}"
            for part in args.without
        )  # fmt: skip
        pairs.append((name, lambda: partial(x)))
    with torch.no_grad():
        expected, got = binary(x), deployed(x)
    diff = float((got - expected).abs().max() / expected.abs().max())
    report = deploy_report(deployed)
    assert report is not None
    print(f"engine {engine.info()['isa']}; fused {len(report.fused)} chains; "
          f"max |deploy - simulation| / max |simulation| = {diff:.1e}")  # fmt: skip
    with torch.no_grad():
        for threads in args.threads:
            set_threads(threads)
            plan = RunPlan(warmup=3, min_runs=args.min_runs, min_total_s=2.0, block=2)
            load_start = os.getloadavg()
            print(f"\n{threads} thread(s)")
            print("| run | median ms | min ms | max ms | runs |\n|---|---|---|---|---|")
            ratios = []
            for name, other in pairs:
                samples = interleaved_samples({name: other, "deploy": lambda: deployed(x)}, plan)
                for label, values in samples.items():
                    t = Timing.from_samples(values)
                    print(f"| {label} | {t.median_s * 1e3:.2f} | {t.min_s * 1e3:.2f} | "
                          f"{t.max_s * 1e3:.2f} | {t.runs} |")  # fmt: skip
                ratio = RatioEstimate.from_samples(
                    samples[name], samples["deploy"], load_note(), block=plan.block
                )
                ratios.append(f"{name} / deploy: {ratio.text()}")
            engine_s, calls = engine_time(deployed, x)
            load_end = os.getloadavg()
            print("\n".join(ratios))
            print(f"deploy: {calls} engine calls take {engine_s * 1e3:.2f} ms (median forward); "
                  f"load {load_start[0]:.2f} -> {load_end[0]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
