"""Whole-network batch-1 inference: torchvision resnet18, paper preset, through ``xnorlab.deploy``
against float PyTorch and against plain ``binarize_model(..., backend="native")``.

One process, interleaved A/B rounds (``xnorlab.measure.timing.interleaved_samples``), the same
thread count for torch and the engine; every speed-up is the median of per-round ratios with
its 95 % interval (``RatioEstimate``). Usage (from the repository root)::

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \\
        .venv/bin/python benchmarks/bench_deploy.py --threads 1 2
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
from functools import partial

# xnorlab first: it sets torch's OpenMP spin (GOMP_SPINCOUNT), which libgomp reads once when
# torch loads; imported after torch, torch's workers would spin on the second core for
# milliseconds after every torch op and keep the engine's second thread off it.
import xnorlab

# isort: split
import torch
import torchvision
from torch import Tensor, nn

from xnorlab import engine
from xnorlab.engine import KernelTiming
from xnorlab.measure.machine import load_note
from xnorlab.measure.timing import (
    Op,
    RatioEstimate,
    RunPlan,
    Timing,
    interleaved_samples,
)
from xnorlab.runtime.fused import EngineChain


def build(seed: int = 0) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module, nn.Module]:
    """(float, deployed, deployed without chains, deployed unfused, plain native) resnet18s
    with the same weights."""
    torch.manual_seed(seed)
    flt = torchvision.models.resnet18().eval()
    binary = copy.deepcopy(flt)
    xnorlab.binarize_model(binary, "paper")
    plain = copy.deepcopy(flt)
    xnorlab.binarize_model(plain, "paper", backend="native")
    return (flt, xnorlab.deploy(binary), xnorlab.deploy(binary, chain=False),
            xnorlab.deploy(binary, fuse=False), plain)  # fmt: skip


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


Setting = tuple[int, engine.ThreadPool]


def setting_label(setting: Setting) -> str:
    threads, pool = setting
    return f"{threads} thr" + (", own pool" if pool is engine.ThreadPool.OWN else "")


def thread_settings(counts: list[int]) -> list[Setting]:
    """Each thread count on torch's OpenMP team (the default), and each count over one on
    the engine's own pool too (one thread runs inline on either)."""
    pools = list(engine.ThreadPool)
    return [(t, p) for t in counts for p in pools if t > 1 or p is engine.ThreadPool.OPENMP]


def use(setting: Setting) -> None:
    threads, pool = setting
    torch.set_num_threads(threads)
    engine.set_threads(threads)
    engine.set_thread_pool(pool)


def engine_threads_ab(deployed: nn.Module, x: Tensor, settings: list[Setting], rounds: int,
                      block: int = 4, warmup: int = 3) -> dict[str, list[list[KernelTiming]]]:  # fmt: skip
    """Engine-call records of ``block`` deploy forwards per round and setting (threads, pool);
    the settings alternate within each round and their order reverses every round. After each
    switch ``warmup`` forwards run unrecorded: right after ``torch.set_num_threads`` torch's
    OpenMP workers hold the second core for a while, which made a per-forward switch read the
    engine's 2-thread calls as no faster than 1-thread ones."""
    records: dict[str, list[list[KernelTiming]]] = {setting_label(s): [] for s in settings}
    # Each thread count as set: the chain's own choice between its threads and one is off.
    chains = [m for m in deployed.modules() if isinstance(m, EngineChain)]
    for chain in chains:
        chain.adaptive_threads = False
        deployed(x)  # the chain made again, unprepared calls first
    for r in range(rounds):
        for setting in settings if r % 2 == 0 else settings[::-1]:
            use(setting)
            for _ in range(warmup):
                deployed(x)
            for _ in range(block):
                with engine.profile() as calls:
                    deployed(x)
                records[setting_label(setting)].append(calls)
    for chain in chains:
        chain.adaptive_threads = None
    use(settings[0])
    return records


def native_s(call: KernelTiming) -> float:
    """The part of an engine call spent in the native kernels (pack, K map, conv), without the
    Python facade's serial overhead."""
    return call.pack_s + call.popcount_s + call.scale_s


def print_engine_threads_ab(records: dict[str, list[list[KernelTiming]]], block: int) -> None:
    """Per engine call (in forward order) the median wall time in each setting, the ratio to
    the first setting, and the same ratio of the native part alone; last, the medians per
    forward of the calls' summed times and their ratios with intervals (``block`` forwards of
    each setting per round, as ``engine_threads_ab`` took them)."""
    counts = list(records)
    base = counts[0]
    calls = len(records[base][0])
    print(f"| call | input | C_out | {' | '.join(f'{t} us' for t in counts)} | "
          f"{' | '.join(f'{base} / {t}' for t in counts[1:])} | "
          f"{' | '.join(f'native {base} / {t}' for t in counts[1:])} |")  # fmt: skip
    print("|" + "---|" * (3 + 3 * len(counts) - 2))
    for i in range(calls):
        med = {t: statistics.median(f[i].total_s for f in records[t]) for t in counts}
        nat = {t: statistics.median(native_s(f[i]) for f in records[t]) for t in counts}
        first = records[base][0][i]
        ratios = " | ".join(f"{med[base] / med[t]:.2f}x" for t in counts[1:])
        native = " | ".join(f"{nat[base] / nat[t]:.2f}x" for t in counts[1:])
        print(f"| {i} | {'x'.join(map(str, first.shape[1:]))} | {first.weight_shape[0]} | "
              f"{' | '.join(f'{med[t] * 1e6:.0f}' for t in counts)} | {ratios} | {native} |")  # fmt: skip
    sums = {t: [sum(c.total_s for c in f) for f in records[t]] for t in counts}
    nats = {t: [sum(native_s(c) for c in f) for f in records[t]] for t in counts}
    ratios = " | ".join(ratio_text(sums[base], sums[t], block) for t in counts[1:])
    native = " | ".join(ratio_text(nats[base], nats[t], block) for t in counts[1:])
    print(f"| all {calls} (median of per-forward sums, ms; per-round ratios, 95 % interval) | | | "
          f"{' | '.join(f'{statistics.median(sums[t]) * 1e3:.2f}' for t in counts)} | "
          f"{ratios} | {native} |")  # fmt: skip


def ratio_text(baseline_s: list[float], run_s: list[float], block: int) -> str:
    """``9.80x [9.52, 10.05]``: how many times faster ``run`` is, the median of one ratio per
    interleaved round with its 95 % interval (``, NOISY`` when too wide or the machine busy)."""
    return RatioEstimate.from_samples(baseline_s, run_s, load_note(), block=block).text(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--min-runs", type=int, default=30)
    parser.add_argument("--ab-rounds", type=int, default=60,
                        help="rounds of the engine-calls thread A/B (0: skip)")  # fmt: skip
    args = parser.parse_args()
    flt, deployed, unchained, unfused, plain = build()
    fixed = copy.deepcopy(deployed)  # its chain always on the pool's threads
    for chain in (m for m in fixed.modules() if isinstance(m, EngineChain)):
        chain.adaptive_threads = False
    x = torch.randn(1, 3, 224, 224)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    print(f"engine {engine.info()['isa']}, load {os.getloadavg()[0]:.1f}")
    with torch.no_grad():
        for threads in args.threads:
            use((threads, engine.ThreadPool.OPENMP))
            ops: dict[str, Op | tuple[Op, Op]] = {
                "float": lambda: flt(x),
                "deploy": lambda: deployed(x),
                "deploy, adaptive threads off": lambda: fixed(x),
                "deploy, a call per conv (chain=False)": lambda: unchained(x),
                "deploy unfused": lambda: unfused(x),
                "binarize_model native": lambda: plain(x),
                "float stem (channels_last)": lambda: stem(flt, x_cl),
                "deploy stem (bn1 folded)": lambda: stem(deployed, x_cl),
            }
            if threads > 1:  # every op sets its pool: the one op on the engine's own pool
                on_team = partial(engine.set_thread_pool, engine.ThreadPool.OPENMP)
                on_own = partial(engine.set_thread_pool, engine.ThreadPool.OWN)
                ops = {name: (on_team, op) for name, op in ops.items() if callable(op)}
                ops["deploy, the engine's own thread pool"] = (on_own, lambda: deployed(x))
            plan = RunPlan(warmup=3, min_runs=args.min_runs, min_total_s=2.0, block=2)
            samples = interleaved_samples(ops, plan)
            print(f"\n{threads} thread(s), load {os.getloadavg()[0]:.1f}")
            print("| run | median ms | min ms | float / run (95 % interval) |\n|---|---|---|---|")
            for name, values in samples.items():
                t = Timing.from_samples(values)
                print(f"| {name} | {t.median_s * 1e3:.2f} | {t.min_s * 1e3:.2f} | "
                      f"{ratio_text(samples['float'], values, plan.block)} |")  # fmt: skip
            engine_s, calls = engine_split(deployed, x)
            print(f"deploy: {calls} engine calls take {engine_s * 1e3:.2f} ms (median forward)")
        if args.ab_rounds > 0 and len(args.threads) > 1:
            block = 4
            records = engine_threads_ab(deployed, x, thread_settings(args.threads),
                                        args.ab_rounds, block)  # fmt: skip
            forwards = len(next(iter(records.values())))
            print(f"\ndeploy's engine calls by threads and pool (adaptive threads off), interleaved "
                  f"in blocks, {forwards} forwards each, load {os.getloadavg()[0]:.1f}")  # fmt: skip
            print_engine_threads_ab(records, block)


if __name__ == "__main__":
    main()
