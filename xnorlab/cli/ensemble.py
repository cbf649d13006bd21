"""``xnorlab ensemble ARCH --data D --members K --modes paper [--bagging] --out ens.pt``.

Trains K members of ARCH (seeds ``--seed + i``, the demo recipe: ``xnorlab.train.ensemble``),
writes them as one ensemble checkpoint, then compares it on the held-out split (which no member
trained or chose on) against a float model (``--baseline``; for lenet the float-trained demo
``demo:lenet``, trained on the same 4,000 training digits): every member, the ensemble of the
first k members for k = 1..K with packed memory and batch-1 latency through the engine, and
the ensembles that fit in the float model's packed memory and in its measured latency
(``xnorlab.measure.ensemble``). Given an ensemble checkpoint instead of ARCH, it only
evaluates. ``--plot`` writes the figure (``report.render.ensemble_plot``), ``--json`` prints
the evaluation. Ctrl-C while training keeps the finished members in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from xnorlab.binary.modes import Mode
from xnorlab.cli import args as cli_args
from xnorlab.cli.common import add_trust
from xnorlab.cli.progress import ProgressBar
from xnorlab.common.atomic import atomic_write_bytes
from xnorlab.common.errors import XnorlabError, quoted
from xnorlab.common.files import existing
from xnorlab.common.tasks import ProgressFn, SigintCancel
from xnorlab.data.bundle import DatasetBundle
from xnorlab.data.datasets import load_dataset, match_classes
from xnorlab.measure.ensemble import EnsembleEvaluation, EnsemblePoint, evaluate_ensemble
from xnorlab.measure.machine import set_threads
from xnorlab.models.demo import ARCHITECTURES, DEFAULT_DATA
from xnorlab.models.ensemble import MAX_MEMBERS, BinaryEnsemble, ensemble_info
from xnorlab.models.loaded import LoadedModel
from xnorlab.models.spec import load_model_spec
from xnorlab.models.xresnet import BINARY_ARCHITECTURES
from xnorlab.models.zoo import torchvision_architectures
from xnorlab.report.render.ensemble_plot import ensemble_figure
from xnorlab.train.ensemble import EnsemblePlan, train_ensemble, train_ensemble_spread
from xnorlab.train.training import TrainConfig

ENSEMBLE_SUFFIXES = (".pt", ".pth", ".safetensors")
DEFAULT_BASELINES = {"lenet": "demo:lenet"}  # float-trained on mnist5k's 4,000 training digits
MAX_PROCESSES = 4 * (os.cpu_count() or 1)


def _arch_or_file(text: str) -> str:
    """A known architecture to train, or an existing ensemble checkpoint to evaluate."""
    name = text.strip()
    if name in ARCHITECTURES or name in BINARY_ARCHITECTURES:
        return name
    path = Path(name).expanduser()
    if path.suffix.lower() in ENSEMBLE_SUFFIXES:
        found = existing(path)
        if found is None or not found.is_file():
            raise argparse.ArgumentTypeError(f"{quoted(name)} is not a file")
        return name
    if name in torchvision_architectures():
        return name
    known = ", ".join(sorted({*ARCHITECTURES, *BINARY_ARCHITECTURES}))
    raise argparse.ArgumentTypeError(
        f"unknown architecture {quoted(name)} (known: {known} or a torchvision name), "
        f"nor an ensemble checkpoint ({', '.join(ENSEMBLE_SUFFIXES)})"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "arch",
        type=_arch_or_file,
        metavar="ARCH",
        help="architecture of the members (lenet, vgg, xresnet18, resnet18, ...), or an "
        "ensemble checkpoint to evaluate without training",
    )
    parser.add_argument("--data", default=None, help="data set (default: the arch's, mnist5k)")
    parser.add_argument(
        "--members", type=cli_args.int_in(1, MAX_MEMBERS), default=None, metavar="K",
        help=f"members to train (1..{MAX_MEMBERS})",
    )  # fmt: skip
    parser.add_argument(
        "--modes", default="paper", help="preset or JSON mode file of each member (paper)"
    )
    parser.add_argument(
        "--bagging", action="store_true",
        help="each member trains on a seeded bootstrap resample of the training split",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=cli_args.output_file(ENSEMBLE_SUFFIXES), default=None,
        help="ensemble checkpoint to write (.pt, .pth, .safetensors)",
    )  # fmt: skip
    parser.add_argument("--epochs", type=cli_args.epochs, default=TrainConfig.epochs)
    parser.add_argument(
        "--seed", type=cli_args.int_in(0, 2**62), default=0, help="member i gets seed + i"
    )
    parser.add_argument(
        "--max-items", type=cli_args.item_count, default=None,
        help="train each member on a seeded subset (quick runs)",
    )  # fmt: skip
    parser.add_argument(
        "--nproc", type=cli_args.int_in(1, MAX_PROCESSES), default=1, metavar="N",
        help="spread the members over N processes of this machine (each trains its own)",
    )  # fmt: skip
    parser.add_argument(
        "--baseline", default=None, metavar="MODEL",
        help="the float model to compare with (default for lenet: demo:lenet)",
    )  # fmt: skip
    parser.add_argument(
        "--samples", type=cli_args.item_count, default=None,
        help="held-out items to score (a stratified seeded sample; default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=cli_args.threads, default=None,
        help="torch and engine threads while timing (default: as they are)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the evaluation as JSON")
    add_trust(parser)
    parser.add_argument(
        "--plot", type=cli_args.output_file((".png",)), default=None, metavar="FILE.png",
        help="write accuracy vs members with memory and latency axes",
    )  # fmt: skip


def reporting(bar: ProgressBar) -> ProgressFn:
    """The bar as the core's progress callable (its metrics are a dict or nothing)."""

    def report(fraction: float, message: str = "", payload: Any = None, /) -> None:
        bar(fraction, message, payload if isinstance(payload, dict) else None)

    return report


# ------------------------------------------------------------------------------ checks


def _is_file(arch: str) -> bool:
    return Path(arch).suffix.lower() in ENSEMBLE_SUFFIXES


def _check(args: argparse.Namespace) -> None:
    """What cannot be combined, before anything is loaded."""
    if _is_file(args.arch):
        given = [flag for flag, value in (("--members", args.members), ("--out", args.out),
                                          ("--bagging", args.bagging)) if value]  # fmt: skip
        if given:
            raise XnorlabError(f"{', '.join(given)}: for training; {args.arch} is already trained")
        return
    if args.members is None or args.out is None:
        raise XnorlabError("training an ensemble needs --members K and --out FILE")
    if args.baseline is None and args.arch not in DEFAULT_BASELINES:
        raise XnorlabError(f"give the float model to compare with: --baseline MODEL "
                           f"(there is a default for {', '.join(DEFAULT_BASELINES)} only)")  # fmt: skip


def _baseline(args: argparse.Namespace, member_arch: str) -> LoadedModel:
    spec = args.baseline or DEFAULT_BASELINES.get(member_arch)
    if spec is None:
        raise XnorlabError("give the float model to compare with: --baseline MODEL")
    loaded = load_model_spec(spec, trust=args.trust)
    binary = [name for name, mode in loaded.modes.items() if mode is not Mode.FLOAT]
    if binary or isinstance(loaded.model, BinaryEnsemble):
        raise XnorlabError(f"--baseline {spec} is not a float model "
                           f"({len(binary)} binarized layers); give a float one")  # fmt: skip
    return loaded


def _data(args: argparse.Namespace, baseline: LoadedModel, default: str | None) -> DatasetBundle:
    spec = args.data or default
    if not spec:
        raise XnorlabError("give --data: the architecture has no default data set")
    bundle = load_dataset(spec, baseline.preprocessing)
    return match_classes(bundle, baseline.class_names)


# ----------------------------------------------------------------------------- running


def run(args: argparse.Namespace) -> int:
    _check(args)
    if _is_file(args.arch):
        loaded = load_model_spec(args.arch, trust=args.trust)
        if not isinstance(loaded.model, BinaryEnsemble):
            raise XnorlabError(f"{args.arch} is not an ensemble (its architecture: {loaded.arch})")
        info = ensemble_info(loaded.card)
        member_arch = info.member_arch if info is not None else ""
        baseline = _baseline(args, member_arch)
        bundle = _data(args, baseline, loaded.default_data)
        ensemble = loaded.model
    else:
        baseline = _baseline(args, args.arch)
        bundle = _data(args, baseline, DEFAULT_DATA.get(args.arch))
        code, trained = _train(args, bundle)
        if trained is None:
            return code
        ensemble = trained
    _say(args, _baseline_line(baseline, bundle))
    if args.threads is not None:
        set_threads(args.threads)
    bar = ProgressBar()
    cancel = SigintCancel()
    try:
        result = evaluate_ensemble(
            ensemble, baseline.model, bundle.val, count=args.samples,
            progress=reporting(bar), should_cancel=cancel, baseline=baseline.spec,
        )  # fmt: skip
    finally:
        cancel.restore()
        bar.close()
    if args.plot is not None:
        atomic_write_bytes(args.plot, ensemble_figure(result, baseline.spec))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(summary(result, baseline.spec))
    if args.plot is not None:
        _say(args, f"plot: {args.plot}")
    return 0


def _plan(args: argparse.Namespace, bundle: DatasetBundle) -> EnsemblePlan:
    recipe = TrainConfig(epochs=args.epochs, seed=args.seed, max_train_items=args.max_items)
    data = args.data or DEFAULT_DATA.get(args.arch) or bundle.name
    plan = EnsemblePlan(args.arch, args.members, args.modes, args.bagging, recipe, data)
    plan.validate()
    return plan


def _train(args: argparse.Namespace, bundle: DatasetBundle) -> tuple[int, BinaryEnsemble | None]:
    """Train the members: (exit status, the ensemble), no ensemble when the run was cancelled
    or failed (the launcher printed why; what was kept is said here)."""
    plan = _plan(args, bundle)
    code = 0
    if args.nproc > 1:
        code, result = train_ensemble_spread(plan, bundle, args.out, args.nproc)
    else:
        bar = ProgressBar()
        cancel = SigintCancel()
        try:
            result = train_ensemble(plan, bundle, args.out, reporting(bar), cancel)
        finally:
            cancel.restore()
            bar.close()
    kept = len(result.member_cards)
    if result.cancelled or result.model is None:
        finished = sum(1 for card in result.member_cards if not card.get("cancelled"))
        partly = "" if finished == kept else " (cancelled part-way: no member finished)"
        where = result.checkpoint or "no file"
        _say(args, f"cancelled: {kept} member(s) kept in {where}{partly}; evaluate them "
                   "with xnorlab ensemble FILE")  # fmt: skip
        return code, None
    _say(args, f"trained {kept} members in {result.seconds:.0f} s on {result.processes} "
               f"process(es); ensemble {result.checkpoint}")  # fmt: skip
    return code, result.model


def _say(args: argparse.Namespace, line: str) -> None:
    """A line about the run: on stdout, or on stderr with ``--json`` (stdout is the JSON)."""
    print(line, file=sys.stderr if args.json else sys.stdout)


def _baseline_line(baseline: LoadedModel, bundle: DatasetBundle) -> str:
    card = baseline.card
    trained_on = card.get("data")
    items = card.get("train_items")
    if trained_on is None:
        return f"baseline {baseline.spec}: its card does not say what it was trained on"
    same = "" if trained_on == bundle.name else f" (NOT the evaluated {bundle.name})"
    count = f"{items:,} training items" if isinstance(items, int) else "its training split"
    return f"baseline {baseline.spec}: float, trained on {trained_on}{same}, {count}"


def report_ensemble(
    loaded: LoadedModel, data_spec: str | None, progress: ProgressFn
) -> EnsembleEvaluation | None:
    """The ensemble section of ``xnorlab report``: an ensemble model evaluated on the held-out
    split of ``data_spec`` (else its own data) against its members' default float baseline;
    None for any other model, or without a data set or a default baseline."""
    info = ensemble_info(loaded.card)
    if not isinstance(loaded.model, BinaryEnsemble) or info is None:
        return None
    spec = data_spec or loaded.default_data
    baseline_spec = DEFAULT_BASELINES.get(info.member_arch)
    if not spec or spec.lower() in ("none", "random") or baseline_spec is None:
        return None
    baseline = load_model_spec(baseline_spec)  # a bundled demo: nothing to trust
    bundle = match_classes(load_dataset(spec, baseline.preprocessing), baseline.class_names)
    return evaluate_ensemble(loaded.model, baseline.model, bundle.val, progress=progress,
                             baseline=baseline_spec)  # fmt: skip


# ------------------------------------------------------------------------------ output


def _kib(size: int) -> str:
    return f"{size / 1024:,.0f} KiB"


def _point_line(point: EnsemblePoint) -> str:
    ratio = point.latency_ratio
    return (
        f"{point.members:>3}  {point.accuracy.text():<34} "
        f"{point.versus_float.text():<58} {_kib(point.packed_bytes):>10} "
        f"{point.latency.median_s * 1e3:>8.3f} ms  {ratio.text(reason=False)}"
    )


def _budget_line(what: str, point: EnsemblePoint | None, budget: str) -> str:
    if point is None:
        return f"at equal {what} ({budget}): not even one member fits"
    return (
        f"at equal {what} ({budget}): {point.members} member(s) fit; ensemble "
        f"{point.accuracy.text()}; float - ensemble {point.versus_float.text()}"
    )


def summary(result: EnsembleEvaluation, baseline: str) -> str:
    """The member table, accuracy vs k with memory and latency, and the two budgets."""
    lines = [f"held-out sample: {result.sample.text()}", "member  top-1"]
    lines += [f"{i:>6}  {acc.text()}" for i, acc in enumerate(result.member_accuracies, 1)]
    float_ms = result.float_latency.median_s * 1e3
    lines += [
        f"float {baseline}: {result.float_accuracy.text()}, {_kib(result.float_packed_bytes)}, "
        f"{float_ms:.3f} ms (batch 1, torch)",
        f"  k  {'ensemble of the first k':<34} {'float - ensemble (paired)':<58} "
        f"{'packed':>10} {'latency':>11}  x float (engine, batch 1)",
        *(_point_line(p) for p in result.points),
        _budget_line("packed memory", result.within_memory, _kib(result.float_packed_bytes)),
        _budget_line("measured latency", result.within_latency, f"{float_ms:.3f} ms"),
        f"engine {result.engine}, {result.threads} torch threads",
    ]
    if result.load:
        lines.append(f"NOISY latency: {result.load}")
    return "\n".join(lines)
