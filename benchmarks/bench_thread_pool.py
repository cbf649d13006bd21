"""The engine's two thread runtimes on one batch-1 XNOR conv that follows a torch float conv (as
in a model): torch's OpenMP team, the engine's own pool, and one thread, in interleaved
blocks in one process; optionally with busy processes beside it (an oversubscribed machine).

Usage (from the repository root; the malloc settings keep the conv's output buffer from going
back to the kernel after every call, whose page faults would dominate a 100 us call)::

    export MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296
    .venv/bin/python benchmarks/bench_thread_pool.py --seconds 15
    .venv/bin/python benchmarks/bench_thread_pool.py --seconds 15 --busy 4

Prints per setting the median, 90th and 99th percentile, max and mean of the conv's wall time.
``--per-shape`` instead times resnet18's four 3x3 shapes at batch 1 and 8 on 2 threads, the
two pools interleaved (``interleaved_samples``), each ratio with its interval.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from functools import partial

# xnorlab first: it sets torch's OpenMP spin before torch loads (see bench_deploy.py).
import xnorlab  # noqa: F401

# isort: split
import torch

from xnorlab import engine
from xnorlab.measure.machine import load_note
from xnorlab.measure.timing import RatioEstimate, RunPlan, interleaved_samples

SETTINGS = {
    "2 threads, OpenMP team": (2, engine.ThreadPool.OPENMP),
    "2 threads, own pool": (2, engine.ThreadPool.OWN),
    "1 thread": (1, engine.ThreadPool.OWN),
}


def busy_loop(until: float) -> None:
    while time.time() < until:
        pass


def measure(seconds: float, block: int = 20) -> dict[str, list[float]]:
    """Samples (s) of a 64@56x56 3x3 XNOR conv right after a float conv of the same shape."""
    torch.manual_seed(0)
    x = torch.randn(1, 64, 56, 56)
    weight = engine.pack_conv2d_weight(torch.randn(64, 64, 3, 3))
    flt = torch.nn.Conv2d(64, 64, 3, padding=1).eval()
    samples: dict[str, list[float]] = {name: [] for name in SETTINGS}
    names = list(SETTINGS)
    end, rounds = time.time() + seconds, 0
    with torch.no_grad():
        while time.time() < end:
            for name in names if rounds % 2 == 0 else names[::-1]:
                threads, pool = SETTINGS[name]
                torch.set_num_threads(2)
                engine.set_threads(threads)
                engine.set_thread_pool(pool)
                for _ in range(block):
                    flt(x)  # torch's team has just run: its workers are awake
                    start = time.perf_counter()
                    engine.xnor_conv2d(x, weight, padding=1)
                    samples[name].append(time.perf_counter() - start)
            rounds += 1
    engine.set_thread_pool(engine.ThreadPool.OPENMP)
    return samples


RESNET_SHAPES = [(64, 56), (128, 28), (256, 14), (512, 7)]  # (channels, side), 3x3 pad 1


def per_shape(min_runs: int) -> None:
    """Own pool over OpenMP team (>1: the team is faster) per shape and batch, 2 threads."""
    torch.set_num_threads(2)
    engine.set_threads(2)
    print("| shape | batch | OpenMP team us | own pool us | own / OpenMP |\n|---|---|---|---|---|")
    for channels, side in RESNET_SHAPES:
        weight = engine.pack_conv2d_weight(torch.randn(channels, channels, 3, 3))
        for batch in (1, 8):
            x = torch.randn(batch, channels, side, side)

            def conv(x: torch.Tensor = x, weight: engine.PackedConv2dWeight = weight) -> None:
                engine.xnor_conv2d(x, weight, padding=1)

            ops = {
                "openmp": (partial(engine.set_thread_pool, engine.ThreadPool.OPENMP), conv),
                "own": (partial(engine.set_thread_pool, engine.ThreadPool.OWN), conv),
            }
            plan = RunPlan(warmup=3, min_runs=min_runs, min_total_s=0.5, block=8)
            samples = interleaved_samples(ops, plan)
            ratio = RatioEstimate.from_samples(samples["own"], samples["openmp"], load_note(),
                                               block=plan.block)  # fmt: skip
            medians = {k: statistics.median(v) * 1e6 for k, v in samples.items()}
            print(f"| {channels}@{side}x{side} | {batch} | {medians['openmp']:.0f} | "
                  f"{medians['own']:.0f} | {ratio.text()} |")  # fmt: skip
    engine.set_thread_pool(engine.ThreadPool.OPENMP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--busy", type=int, default=0, help="busy-loop processes beside it")
    parser.add_argument("--per-shape", action="store_true",
                        help="resnet18's 3x3 shapes, batch 1 and 8, pools interleaved")  # fmt: skip
    parser.add_argument("--min-runs", type=int, default=200, help="per op, with --per-shape")
    args = parser.parse_args()
    if args.per_shape:
        print(f"engine {engine.info()['isa']}, load {os.getloadavg()[0]:.1f}")
        per_shape(args.min_runs)
        return
    context = multiprocessing.get_context("spawn")
    until = time.time() + args.seconds + 10  # spawned processes take a few seconds to start
    busy = [context.Process(target=busy_loop, args=(until,)) for _ in range(args.busy)]
    for process in busy:
        process.start()
    if busy:
        time.sleep(5)
    samples = measure(args.seconds)
    for process in busy:
        process.join()
    print(f"engine {engine.info()['isa']}, {args.busy} busy processes, load "
          f"{os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")  # fmt: skip
    print(
        "| setting | n | median us | p90 us | p99 us | max us | mean us |\n|---|---|---|---|---|---|---|"
    )
    for name, values in samples.items():
        ordered, n = sorted(values), len(values)
        cut = [ordered[min(n - 1, int(q * n))] * 1e6 for q in (0.5, 0.9, 0.99)]
        print(f"| {name} | {n} | {cut[0]:.0f} | {cut[1]:.0f} | {cut[2]:.0f} | "
              f"{ordered[-1] * 1e6:.0f} | {statistics.mean(values) * 1e6:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
