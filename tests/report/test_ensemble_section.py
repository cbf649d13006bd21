"""An ensemble in the report: accuracy vs members with memory and latency (a plot and a table
in HTML/Markdown, the evaluation in JSON); a report of another model keeps its old shape; the
report command adds the section when the model is an ensemble."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from xnorlab.binary.surgery import binarize_model
from xnorlab.cli.main import main
from xnorlab.measure.ensemble import EnsembleEvaluation, evaluate_ensemble
from xnorlab.measure.timing import RunPlan
from xnorlab.models.checkpoint import layer_settings, save_checkpoint
from xnorlab.models.ensemble import BinaryEnsemble, ensemble_card
from xnorlab.models.zoo import build_arch
from xnorlab.report.build import Report, ReportData, ReportOptions, build_report
from xnorlab.report.render import render

PNG_URI = re.compile(r'src="data:image/png;base64,([^"]+)"')


def _linear(weight: list[list[float]]) -> nn.Linear:
    layer = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
    return layer


@pytest.fixture(scope="module")
def evaluation() -> EnsembleEvaluation:
    items = TensorDataset(torch.eye(2).repeat(10, 1), torch.tensor([0, 1] * 10))
    members = [_linear([[1.0, 0.0], [0.0, 1.0]]), _linear([[0.0, 1.0], [1.0, 0.0]])]
    plan = RunPlan(warmup=1, min_runs=6, max_runs=12, min_total_s=0.0, block=1)
    return evaluate_ensemble(BinaryEnsemble(members), _linear([[1.0, 0.0], [0.0, 1.0]]), items,
                             plan=plan, baseline="float-net")  # fmt: skip


@pytest.fixture(scope="module")
def plain_report(tiny_factory) -> Report:  # type: ignore[no-untyped-def]
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    options = ReportOptions(latency=False, sensitivity=False, file_sizes=False, histogram_bins=8)
    return build_report(tiny_factory(), {"conv2": "xnor"}, ReportData("random", x), options=options)


def test_markdown_html_and_json_show_the_members_curve(
    plain_report: Report, evaluation: EnsembleEvaluation
) -> None:
    report = dataclasses.replace(plain_report, ensemble=evaluation)
    markdown = render(report, "md")
    assert "## Ensemble: accuracy vs number of members" in markdown
    # member 1 is right on every item, member 2 on none: k=1 100 %, k=2 a tie each time
    assert "| 1 | 100.00 % [83.9, 100.0] (n=20) |" in markdown
    assert "float-net: 100.00 %" in markdown and "at equal packed memory" in markdown
    html = render(report, "html")
    assert len(PNG_URI.findall(html)) == len(PNG_URI.findall(render(plain_report, "html"))) + 1
    assert "accuracy against members, packed memory and latency" in html
    data = json.loads(render(report, "json"))
    assert data["ensemble"] == json.loads(json.dumps(evaluation.to_json()))
    assert data["ensemble"]["within_memory"] == 1
    assert "ensemble" not in json.loads(render(plain_report, "json"))  # the old shape


@pytest.mark.slow
def test_report_command_adds_the_section_for_an_ensemble(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_arch("ensemble-lenet-2")
    binarize_model(model, "paper")
    modes, configs = layer_settings(model)
    card = {"ensemble": ensemble_card("lenet", [0, 1], "paper", False, [{}, {}])}
    meta = {"arch": "ensemble-lenet-2", "num_classes": 10, "modes": modes,
            "layer_config": configs, "card": card, "default_data": "digits"}  # fmt: skip
    path = save_checkpoint(tmp_path / "ens.pt", model.eval(), meta)
    out = tmp_path / "r.json"
    argv = ["report", str(path), "--out", str(out), "--limit", "32", "--no-sensitivity",
            "--quiet"]  # fmt: skip
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert data["ensemble"]["baseline"] == "demo:lenet"
    assert [e["members"] for e in data["ensemble"]["ensembles"]] == [1, 2]
