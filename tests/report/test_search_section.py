"""The search's front in the report: a plot and a table in HTML/Markdown, the result in JSON,
each layer's modes in CSV; a report without a search keeps its old shape."""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import json
import re

import pytest
import torch

from xnorlab.binary.modes import Mode
from xnorlab.data.sampling import SampleInfo
from xnorlab.measure.front import Agreement, FrontPoint, Objective, SearchResult, pareto_front
from xnorlab.measure.intervals import Accuracy
from xnorlab.models.loaded import LoadedModel
from xnorlab.report.build import Report, ReportData, ReportOptions, build_report
from xnorlab.report.render import render
from xnorlab.report.render.format import search_rows
from xnorlab.report.render.plots import search_figure

PNG_URI = re.compile(r'src="data:image/png;base64,([^"]+)"')
F, B, X = Mode.FLOAT, Mode.BWN, Mode.XNOR


def _point(modes: tuple[Mode, Mode, Mode], hits: int, ms: float, memory: int) -> FrontPoint:
    named = dict(zip(("conv1", "conv2", "fc"), modes, strict=True))
    return FrontPoint(named, Accuracy(hits, 200), ms, (0.9 * ms, 1.1 * ms), memory)


def _search(chosen: bool = True) -> SearchResult:
    floats = _point((F, F, F), 190, 1.0, 4000)
    middle = _point((F, X, F), 188, 0.6, 1500)
    everything = _point((X, X, B), 120, 0.3, 400)
    samples = SampleInfo(200, 0, {0: 100, 1: 100})
    return SearchResult(
        float_point=floats,
        front=pareto_front([floats, middle, everything]),
        chosen=middle if chosen else None,
        confirm_accuracy=Accuracy(185, 200) if chosen else None,
        confirm_float=Accuracy(189, 200),
        budget_points=1.0,
        objective=Objective.LATENCY,
        metric=Agreement.TOP1,
        score_sample=samples,
        confirm_sample=samples,
        evaluated=7,
    )


@pytest.fixture(scope="module")
def plain_report(tiny_factory) -> Report:  # type: ignore[no-untyped-def]
    loaded: LoadedModel = tiny_factory()
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    options = ReportOptions(latency=False, sensitivity=False, file_sizes=False, histogram_bins=8)
    return build_report(loaded, {"conv2": "xnor"}, ReportData("random", x), options=options)


def test_build_report_keeps_the_search_it_is_given(tiny_factory) -> None:  # type: ignore[no-untyped-def]
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    options = ReportOptions(latency=False, sensitivity=False, file_sizes=False, histogram_bins=8)
    search = _search()
    report = build_report(
        tiny_factory(), None, ReportData("random", x), options=options, search=search
    )
    assert report.search is search


def test_markdown_and_html_show_the_front_the_choice_and_its_confirmation(
    plain_report: Report,
) -> None:
    report = plain_report.__class__(**{**plain_report.__dict__, "search": _search()})
    markdown = render(report, "md")
    assert "## What to binarize: searched front" in markdown
    assert (
        "| chosen | FXF | 1 of 3 | 94.00 [89.8, 96.5] | 0.6 [0.54, 0.66] | 1.67x | 1.5 |"
        in markdown
    )
    assert "| float | FFF | 0 of 3 |" in markdown and "| 1 | XXB | 3 of 3 |" in markdown
    assert "92.50 [88.0, 95.4] vs 94.50 [90.4, 96.9]" in markdown  # confirm: chosen vs float
    assert (  # 185 vs 189 of 200: 2 points lost, budget 1
        "| within the budget on the confirm split | no, more than the budget: the chosen point "
        "loses 2.0 points against float |" in markdown
    )
    within = dataclasses.replace(_search(), confirm_accuracy=Accuracy(187, 200))
    rows = dict(search_rows(within))
    assert rows["within the budget on the confirm split"] == (
        "yes: the chosen point loses 1.0 points against float"
    )
    html = render(report, "html")
    images = PNG_URI.findall(html)
    assert len(images) == len(PNG_URI.findall(render(plain_report, "html"))) + 1
    assert "search front: accuracy against latency" in html and "<td>chosen</td>" in html


def test_json_holds_the_search_result_and_csv_the_modes_per_layer(plain_report: Report) -> None:
    search = _search()
    report = plain_report.__class__(**{**plain_report.__dict__, "search": search})
    data = json.loads(render(report, "json"))
    assert data["search"] == json.loads(json.dumps(search.to_json()))
    assert "search" not in json.loads(render(plain_report, "json"))  # old shape without one
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert [row["search_chosen_mode"] for row in rows] == ["float", "xnor", "float"]
    assert [row["search_front_1_mode"] for row in rows] == ["xnor", "xnor", "bwn"]
    assert len([c for c in rows[0] if c.startswith("search_front_")]) == len(search.front)
    assert "search_chosen_mode" not in next(csv.reader(io.StringIO(render(plain_report, "csv"))))


def test_nothing_chosen_is_said_in_words_and_the_plot_still_draws() -> None:
    search = _search(chosen=False)
    assert base64.b64encode(search_figure(search))  # a PNG without the chosen ring
    assert search_figure(search).startswith(b"\x89PNG\r\n\x1a\n")
