"""The engine's max pool (``xnorlab.engine.max_pool2d``) against ``F.max_pool2d`` on the
ResNet stem's pool (3x3, stride 2, padding 1 on 64x112x112, channels_last, batch 1).

One process, interleaved A/B rounds, the same thread count for both; prints each side's
median and the ratio with its interval. Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_pool.py --threads 1 2
"""

from __future__ import annotations

import argparse

# xnorlab first: it sets torch's OpenMP spin before torch loads (see bench_deploy.py).
import xnorlab  # noqa: F401

# isort: split
import torch
import torch.nn.functional as F

from xnorlab import engine
from xnorlab.measure.machine import load_note, set_threads
from xnorlab.measure.timing import RatioEstimate, RunPlan, Timing, interleaved_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--min-runs", type=int, default=200)
    args = parser.parse_args()
    x = torch.randn(1, 64, 112, 112).contiguous(memory_format=torch.channels_last)
    assert torch.equal(engine.max_pool2d(x, 3, 2, 1), F.max_pool2d(x, 3, 2, 1))
    print(f"engine {engine.info()['isa']}; 64x112x112 channels_last, 3x3 stride 2 padding 1")
    for threads in args.threads:
        set_threads(threads)
        plan = RunPlan(warmup=10, min_runs=args.min_runs, min_total_s=0.5, block=5)
        samples = interleaved_samples(
            {"torch": lambda: F.max_pool2d(x, 3, 2, 1),
             "engine": lambda: engine.max_pool2d(x, 3, 2, 1)}, plan
        )  # fmt: skip
        ratio = RatioEstimate.from_samples(
            samples["torch"], samples["engine"], load_note(), block=plan.block
        )
        medians = {k: Timing.from_samples(v).median_s * 1e6 for k, v in samples.items()}
        print(f"{threads} thread(s): torch {medians['torch']:.0f} us, engine "
              f"{medians['engine']:.0f} us, torch / engine {ratio.text()}")  # fmt: skip


if __name__ == "__main__":
    main()
