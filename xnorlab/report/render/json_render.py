"""JSON renderer: the report as a plain object (schema in ``docs/report-schema.md``)."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from xnorlab.report.model import Report


def plain(value: Any) -> Any:
    """JSON-able form: a measurement's own ``to_json()`` (``Accuracy``, ``PairedDifference``,
    ``RatioEstimate``, ``SampleInfo``), other dataclasses field by field, tuples -> lists,
    non-finite floats -> None (JSON has no NaN)."""
    if hasattr(value, "to_json"):
        return plain(value.to_json())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def report_to_dict(report: Report) -> dict[str, Any]:
    """The report as JSON-able nested dicts; ``header.settings`` and
    ``header.unbinarizable_layers`` become objects; ``search`` (when there is one) is
    ``SearchResult.to_json``."""
    data: dict[str, Any] = plain(report)
    data["header"]["settings"] = dict(report.header.settings)
    data["header"]["unbinarizable_layers"] = dict(report.header.unbinarizable_layers)
    if report.search is None:
        del data["search"]  # a report without a search has the shape it always had
    if report.ensemble is None:
        del data["ensemble"]  # likewise a report of a model that is not an ensemble
    return {"schema_version": data.pop("schema_version"), **data}


def render_json(report: Report) -> str:
    """Pretty-printed JSON (2-space indent, keys in schema order), ending in a newline."""
    return json.dumps(report_to_dict(report), indent=2, allow_nan=False) + "\n"
