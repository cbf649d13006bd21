"""JSON renderer: the report as a plain object (schema in ``docs/report-schema.md``)."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from xnorlab.report.model import Report


def _clean(value: Any) -> Any:
    """Tuples -> lists, non-finite floats -> None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def report_to_dict(report: Report) -> dict[str, Any]:
    """The report as JSON-able nested dicts; ``header.settings`` becomes an object."""
    data: dict[str, Any] = _clean(dataclasses.asdict(report))
    data["header"]["settings"] = dict(report.header.settings)
    return {"schema_version": data.pop("schema_version"), **data}


def render_json(report: Report) -> str:
    """Pretty-printed JSON (2-space indent, keys in schema order), ending in a newline."""
    return json.dumps(report_to_dict(report), indent=2, allow_nan=False) + "\n"
