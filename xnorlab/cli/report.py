"""``xnorlab report MODEL --out FILE``: the per-layer binarization report (HTML/JSON/CSV/MD).

Every argument is checked when argparse reads it (``xnorlab.cli.args``): a bad thread count,
size or output path ends in one line and exit 2 before torch's threads are set or a model is
loaded.
"""

from __future__ import annotations

import argparse
import io

from xnorlab.cli import args as cli_args
from xnorlab.cli.common import (
    add_layer_settings,
    add_model_arguments,
    add_trust,
    layer_settings,
    load_model,
)
from xnorlab.cli.ensemble import report_ensemble, reporting
from xnorlab.cli.progress import ProgressBar
from xnorlab.cli.search import PHOTOS, cancelled, run_search
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import Cancelled
from xnorlab.data.datasets import load_dataset
from xnorlab.measure.front import Objective, SearchResult
from xnorlab.measure.machine import set_threads
from xnorlab.models.loaded import LoadedModel
from xnorlab.report.build import ReportData, ReportOptions, build_report
from xnorlab.report.data import (
    report_data_from_bundle,
    synthetic_report_data,
    unlabelled_report_data,
)
from xnorlab.report.render import RENDERERS, write_report
from xnorlab.search.walk import SearchOptions

NO_DATA = "none"
RANDOM = "random"
MAX_REPEATS = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, "demo:lenet-xnor, resnet18, model.pt")
    parser.add_argument(
        "--modes",
        default=None,
        help="preset (paper, paper-bwn, xnor, bwn, float) or a JSON mode file "
        "(default: the modes stored with the model, else paper)",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="data set (mnist5k, digits, cifar10:ROOT, a folder, ...); 'none' "
        "calibrates on the 8 bundled real photos (unlabelled: no accuracy) when the model "
        "takes 1- or 3-channel images, else on random inputs; 'random' always uses seeded "
        "random inputs (default: the model's own data set, else none)",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=cli_args.output_file(tuple(RENDERERS)),
        help="output file: .html, .json, .csv or .md",
    )
    parser.add_argument(
        "--no-sensitivity",
        action="store_true",
        help="skip the per-layer accuracy sensitivity sweep",
    )
    parser.add_argument("--no-latency", action="store_true", help="skip latency timing")
    parser.add_argument(
        "--threads", type=cli_args.threads, default=None, help="threads for torch and engine"
    )
    _add_measurement_arguments(parser)


def _add_measurement_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of what is measured and how (engine, sizes, repeats, layer settings)."""
    parser.add_argument(
        "--engine",
        choices=("native", "torch"),
        default="native",
        help="engine of the configured model's timing (default: native)",
    )
    parser.add_argument(
        "--calibration",
        type=cli_args.item_count,
        default=None,
        metavar="N",
        help="calibration batch size for errors and sign statistics (default: 32 for small "
        "inputs, 4 for ImageNet-sized ones: a 224x224 batch of 4 has millions of values; "
        "the bundled photos are at most 8)",
    )
    parser.add_argument(
        "--limit",
        type=cli_args.item_count,
        default=1000,
        metavar="N",
        help="validation items used for accuracy: a seeded, class-stratified sample (1000)",
    )
    parser.add_argument(
        "--repeats",
        type=cli_args.int_in(1, MAX_REPEATS),
        default=10,
        help="timing repeats, at least (10)",
    )
    add_layer_settings(parser, weight_grad=False)
    add_trust(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")  # fmt: skip
    _add_search_arguments(parser)


def _add_search_arguments(parser: argparse.ArgumentParser) -> None:
    """``--search-budget`` runs ``xnorlab search`` first and adds its front to the report."""
    group = parser.add_argument_group("what to binarize (xnorlab search)")
    group.add_argument(
        "--search-budget",
        type=cli_args.float_in(0.0, 100.0, what="budget"),
        default=None,
        metavar="POINTS",
        help="also search per-layer modes within this many top-1 points of float (agreement "
        "with float on the bundled photos without a data set) and show the front",
    )
    group.add_argument(
        "--search-objective",
        choices=[o.value for o in Objective],
        default=Objective.LATENCY.value,
        help="what the search minimizes within the budget (default: latency)",
    )


def apply_threads(threads: int | None) -> None:
    """Apply ``--threads`` (checked by ``cli_args.threads``) to torch and the native engine."""
    if threads is not None:
        set_threads(threads)


def load_report_data(
    loaded: LoadedModel, spec: str | None, calib: int | None, limit: int
) -> ReportData:
    """Calibration batch (train split) and validation tensors (val split) of ``spec``.

    Without a data set: the bundled calibration photos, or random inputs where they cannot
    serve (``unlabelled_report_data``); ``random`` forces random inputs.
    """
    name = spec or loaded.default_data or NO_DATA
    if name.lower() == NO_DATA:
        return unlabelled_report_data(loaded.input_shape, loaded.preprocessing, calib)
    if name.lower() == RANDOM:
        return synthetic_report_data(loaded.input_shape, calib)
    bundle = load_dataset(name, loaded.preprocessing, loaded.class_names or None)
    return report_data_from_bundle(bundle, calib, limit)


def _search(args: argparse.Namespace, loaded: LoadedModel, bar: ProgressBar) -> SearchResult | None:
    """The search ``--search-budget`` asks for, on ``--data`` (the bundled photos when the
    report has no data set; 'random' inputs cannot be searched on)."""
    if args.search_budget is None:
        return None
    spec = args.data or loaded.default_data or NO_DATA
    if spec.lower() == RANDOM:
        raise XnorlabError("--search-budget: random inputs have no answer to agree on; give --data")
    options = SearchOptions(args.search_budget, Objective.parse(args.search_objective),
                            score_items=args.limit, confirm_items=args.limit)  # fmt: skip
    data_spec = PHOTOS if spec.lower() == NO_DATA else spec
    result, _ = run_search(loaded, data_spec, options, layer_settings(args), bar)
    return result


def run(args: argparse.Namespace) -> int:
    apply_threads(args.threads)
    loaded = load_model(args, trust=args.trust)
    modes = args.modes or (loaded.modes if loaded.modes else "paper")
    data = load_report_data(loaded, args.data, args.calibration, args.limit)
    options = ReportOptions(
        sensitivity=not args.no_sensitivity, latency=not args.no_latency,
        latency_repeats=args.repeats, engine=args.engine,
    )  # fmt: skip
    bar = ProgressBar(stream=io.StringIO() if args.quiet else None)
    try:
        search = _search(args, loaded, bar)
        ensemble = report_ensemble(loaded, args.data, reporting(bar))
        report = build_report(loaded, modes, data, options=options, settings=layer_settings(args),
                              progress=bar, search=search, ensemble=ensemble)  # fmt: skip
    except Cancelled:
        bar.close()
        return cancelled("report")
    finally:
        bar.close()
    path = write_report(report, args.out)
    totals = report.totals
    print(f"wrote {path}: {len(report.layers)} layers, compression {totals.compression:.2f}x, "
          f"binarized MACs {100 * totals.binarized_mac_ratio:.1f}%")  # fmt: skip
    return 0
