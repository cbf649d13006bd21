"""Whole-network batch-1 inference: torchvision resnet18, paper preset, through ``xnorlab.deploy``
against float PyTorch and against plain ``binarize_model(..., backend="native")``.

One process, interleaved A/B rounds (``xnorlab.measure.timing.time_interleaved``), the same
thread count for torch and the engine. Usage (from the repository root)::

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \\
        .venv/bin/python benchmarks/bench_deploy.py --threads 1 2
"""

from __future__ import annotations

import argparse
import copy
import os

import torch
import torchvision
from torch import Tensor, nn

import xnorlab
from xnorlab import engine
from xnorlab.measure.timing import RunPlan, time_interleaved


def build(seed: int = 0) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
    """(float, deployed, deployed unfused, plain native) resnet18s with the same weights."""
    torch.manual_seed(seed)
    flt = torchvision.models.resnet18().eval()
    binary = copy.deepcopy(flt)
    xnorlab.binarize_model(binary, "paper")
    plain = copy.deepcopy(flt)
    xnorlab.binarize_model(plain, "paper", backend="native")
    return flt, xnorlab.deploy(binary), xnorlab.deploy(binary, fuse=False), plain


def stem(model: nn.Module, x: Tensor) -> Tensor:
    """The float layers before the first binary block (conv1, bn1 unless folded, relu,
    maxpool)."""
    for name in ("conv1", "bn1", "relu", "maxpool"):
        if hasattr(model, name):
            x = getattr(model, name)(x)
    return x


def engine_split(deployed: nn.Module, x: Tensor, calls: int = 20) -> tuple[float, int]:
    """Median per forward of the engine calls' own time (s) and the number of calls."""
    totals = []
    for _ in range(calls):
        with engine.profile() as records:
            deployed(x)
        totals.append(sum(r.total_s for r in records))
    totals.sort()
    return totals[len(totals) // 2], len(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--min-runs", type=int, default=30)
    args = parser.parse_args()
    flt, deployed, unfused, plain = build()
    x = torch.randn(1, 3, 224, 224)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    print(f"engine {engine.info()['isa']}, load {os.getloadavg()[0]:.1f}")
    with torch.no_grad():
        for threads in args.threads:
            torch.set_num_threads(threads)
            engine.set_threads(threads)
            ops = {
                "float": lambda: flt(x),
                "deploy": lambda: deployed(x),
                "deploy unfused": lambda: unfused(x),
                "binarize_model native": lambda: plain(x),
                "float stem (channels_last)": lambda: stem(flt, x_cl),
                "deploy stem (bn1 folded)": lambda: stem(deployed, x_cl),
            }
            plan = RunPlan(warmup=3, min_runs=args.min_runs, min_total_s=2.0, block=2)
            result = time_interleaved(ops, plan)
            base = result["float"].median_s
            print(f"\n{threads} thread(s), load {os.getloadavg()[0]:.1f}")
            print("| run | median ms | min ms | float / run |\n|---|---|---|---|")
            for name, t in result.items():
                print(f"| {name} | {t.median_s * 1e3:.2f} | {t.min_s * 1e3:.2f} | "
                      f"{base / t.median_s:.2f}x |")  # fmt: skip
            engine_s, calls = engine_split(deployed, x)
            print(f"deploy: {calls} engine calls take {engine_s * 1e3:.2f} ms (median forward)")


if __name__ == "__main__":
    main()
