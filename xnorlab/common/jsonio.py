"""Reading JSON a user or a file hands us: bounded in size and depth, finite numbers only.

Python's parser accepts NaN and Infinity and recurses once per nesting level, so a crafted
file could smuggle non-finite numbers into shapes and scales or end in a RecursionError.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from xnorlab.common.errors import XnorlabError
from xnorlab.common.files import MIB, read_bounded

MAX_JSON_BYTES = 4 * MIB
MAX_JSON_DEPTH = 32


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf
        raise ValueError(f"{text[:20]} is not a finite number")
    return value


def json_depth(value: Any) -> int:
    """Nesting depth of containers in ``value`` (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        )
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json(text: str | bytes, *, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse ``text``; any problem is one ``XnorlabError`` line naming ``what``."""
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise XnorlabError(f"{what} is nested too deeply") from None
    except UnicodeDecodeError:
        raise XnorlabError(f"{what} is not UTF-8 text") from None
    except ValueError as exc:  # JSONDecodeError and the non-finite constants
        raise XnorlabError(f"{what} is not valid JSON: {str(exc)[:120]}") from None
    if json_depth(data) > max_depth:
        raise XnorlabError(f"{what} is nested deeper than {max_depth} levels")
    return data


def load_json_file(
    path: str | Path, *, what: str, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """``parse_json`` of a checked, size-bounded input file."""
    data = read_bounded(path, what=what, max_bytes=max_bytes)
    return parse_json(data, what=f"{what} {path}", max_depth=max_depth)
