"""Renderers snapshot-tested on a tiny deterministic model (volatile fields masked).

Update the snapshots after an intended change with ``XNORLAB_UPDATE_SNAPSHOTS=1 pytest
tests/report/test_render.py`` and review the diff.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from xnorlab.common.errors import XnorlabError
from xnorlab.measure.timing import RatioEstimate
from xnorlab.models.loaded import LoadedModel
from xnorlab.report.build import Report, ReportData, ReportOptions, build_report
from xnorlab.report.render import render, write_report

SNAPSHOTS = Path(__file__).parent / "snapshots"
PNG_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _round(value: Any) -> Any:
    """Floats to 6 significant digits (thread-count noise stays out of the snapshots)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _round(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **changes)
    if isinstance(value, tuple):
        return tuple(_round(v) for v in value)
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def _masked(report: Report) -> Report:
    """Fixed values for date, machine, versions, engine and every timing."""
    header = dataclasses.replace(
        report.header, date="DATE", machine="MACHINE", torch_version="TORCH",
        xnorlab_version="VERSION", isa="ISA", threads=0, engine="ENGINE",
        notes=tuple(n for n in report.header.notes if not n.startswith("latency is noisy")),
    )  # fmt: skip
    timing = {"latency_float_ms": 2.0, "latency_config_ms": 0.5, "speedup": 4.0}
    ratio = RatioEstimate(median=4.0, low=3.5, high=4.5, rounds=100)
    whole = {"speedup": ratio, "latency_float_unattributed_ms": 0.25,
             "latency_config_unattributed_ms": 0.125}  # fmt: skip
    split = {"kernel_pack_ms": 0.1, "kernel_popcount_ms": 0.2, "kernel_scale_ms": 0.05}
    layers = tuple(
        dataclasses.replace(layer, **timing, **(split if layer.mode != "float" else {}))
        for layer in report.layers
    )
    totals = dataclasses.replace(report.totals, **{**timing, **whole})
    return _round(dataclasses.replace(report, header=header, layers=layers, totals=totals))


@pytest.fixture(scope="module")
def report(tiny_factory: Callable[[], LoadedModel]) -> Report:
    loaded = tiny_factory()
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(48, 1, 8, 8, generator=generator)
    y = torch.randint(0, 5, (48,), generator=generator)
    data = ReportData("random", x[:16], x, y)
    options = ReportOptions(latency_repeats=1, file_sizes=False, histogram_bins=8)
    built = build_report(loaded, {"conv2": "xnor", "fc": "bwn"}, data, options=options)
    return _masked(built)


def _check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("XNORLAB_UPDATE_SNAPSHOTS") == "1":
        path.write_text(text, encoding="utf-8")
    if not path.exists():
        pytest.fail(f"snapshot {name} missing: run with XNORLAB_UPDATE_SNAPSHOTS=1 and review")
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its snapshot"


@pytest.mark.parametrize("fmt", ["json", "csv", "md"])
def test_text_renderers_match_snapshots(report: Report, fmt: str) -> None:
    _check_snapshot(f"tiny.{fmt}", render(report, fmt))


def test_html_matches_snapshot_and_embeds_valid_pngs(report: Report) -> None:
    html = render(report, "html")
    images = PNG_URI.findall(html)
    assert len(images) == 4 + len(report.layers)  # alpha, error, sensitivity, latency + layers
    for payload in images:
        assert base64.b64decode(payload).startswith(b"\x89PNG\r\n\x1a\n")
    assert "http://" not in html and "https://" not in html  # opens offline
    _check_snapshot("tiny.html", PNG_URI.sub('src="PNG"', html))


def test_json_and_csv_carry_the_report_values(report: Report) -> None:
    data = json.loads(render(report, "json"))
    assert data["schema_version"] == report.schema_version
    assert data["totals"]["params"] == report.totals.params
    assert [layer["name"] for layer in data["layers"]] == ["conv1", "conv2", "fc"]
    assert data["layers"][1]["alphas"] == list(report.layers[1].alphas)
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert [row["mode"] for row in rows] == ["float", "xnor", "bwn"]
    assert int(rows[1]["macs"]) == report.layers[1].macs
    # every accuracy carries n and its interval; every difference its paired verdict
    totals = data["totals"]
    assert totals["accuracy_float"]["n"] == 48 and len(totals["accuracy_float"]["interval95"]) == 2
    assert totals["accuracy_drop"]["verdict"] in ("exceeds noise", "within noise")
    assert totals["speedup"]["noisy"] is False and totals["speedup"]["rounds"] == 100
    fc = data["layers"][2]
    assert fc["binarize_alone"]["candidate"]["n"] == 48 and fc["restore_alone"]["p_value"] <= 1
    assert rows[2]["binarize_alone_verdict"] == fc["binarize_alone"]["verdict"]
    assert float(rows[2]["restore_alone_cost"]) == pytest.approx(fc["restore_alone"]["cost"])


def test_write_report_picks_the_format_and_writes_atomically(
    report: Report, tmp_path: Path
) -> None:
    for suffix in (".html", ".json", ".csv", ".md"):
        path = write_report(report, tmp_path / f"r{suffix}")
        assert path.read_text(encoding="utf-8") == render(report, suffix)
    with pytest.raises(XnorlabError, match="format"):
        write_report(report, tmp_path / "r.pdf")
    with pytest.raises(XnorlabError, match="cannot write"):
        write_report(report, tmp_path / "no" / "such" / "dir.md")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.html", "r.json", "r.md"]


def test_an_interrupted_write_keeps_the_old_file(
    report: Report, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "r.md"
    target.write_text("old report", encoding="utf-8")

    def broken_replace(src: str, dst: str) -> None:
        raise KeyboardInterrupt  # e.g. Ctrl+C between writing and renaming

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(KeyboardInterrupt):
        write_report(report, target)
    assert target.read_text(encoding="utf-8") == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["r.md"]  # no temp file left behind
