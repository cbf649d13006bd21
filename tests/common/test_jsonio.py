"""User JSON: finite numbers only, bounded depth, one-line errors."""

from __future__ import annotations

import pytest

from xnorlab.common.errors import XnorlabError
from xnorlab.common.jsonio import json_depth, parse_json


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": NaN}', "not a finite number"),
        ('{"a": -Infinity}', "not a finite number"),
        ('{"a": 1e999}', "not a finite number"),
        ("[" * 50_000 + "]" * 50_000, "nested"),
        ('{"a": [[[[1]]]]}', "deeper than 3"),
        ("{oops", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8|not valid JSON"),
    ],
)
def test_bad_json_is_one_line(text: str | bytes, message: str) -> None:
    with pytest.raises(XnorlabError, match=message) as caught:
        parse_json(text, what="mode file", max_depth=3)
    assert "\n" not in str(caught.value)


def test_depth_counts_containers_without_recursion() -> None:
    assert json_depth(1) == 0 and json_depth([]) == 1 and json_depth({"a": [{"b": 2}]}) == 3
    assert parse_json('{"a": [1.5, 2]}', what="x") == {"a": [1.5, 2]}
