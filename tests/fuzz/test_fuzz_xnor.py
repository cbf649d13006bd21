"""Damaged and crafted ``.xnor`` files through ``xnorlab predict`` and ``xnorlab eval``.

Each case writes one mutation of a real export of ``demo:lenet-xnor`` and runs the CLI on it:
a clear one-line error (exit 2), or, when the mutation left a valid model (a flipped weight
bit, an edited card), a well-formed result (exit 0).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from fuzz_support import (
    Samples,
    check_evaluation,
    check_predictions,
    fuzz,
    run_case,
)
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save_file

EVAL_ITEMS = 8
E999 = "__1e999__"  # a JSON number too large for a float: json reads it as inf


def _run(path: Path, image: Path, capsys: pytest.CaptureFixture[str], command: str,
         valid: bool | None = None) -> None:  # fmt: skip
    """``predict`` (one image, top 3) or ``eval`` (8 items of its data) on ``path``."""
    if command == "predict":
        outcome = run_case(["predict", path, image, "--json"], capsys, path.parent, valid=valid)
        if outcome.code == 0:
            check_predictions(outcome, images=1, topk=3)
    else:
        argv: list[str | Path] = [
            "eval",
            path,
            "--json",
            "--max-items",
            str(EVAL_ITEMS),
            "--batch-size",
            "4",
        ]
        outcome = run_case(argv, capsys, path.parent, valid=valid)
        if outcome.code == 0:
            check_evaluation(outcome, EVAL_ITEMS)


def _write(folder: Path, data: bytes) -> Path:
    path = folder / "mutated.xnor"
    path.write_bytes(data)
    return path


commands = st.sampled_from(["predict", "eval"])


# --------------------------------------------------------------------------- raw bytes


@fuzz(25)
@given(fraction=st.floats(0.0, 1.0, exclude_max=True), command=commands)
def test_truncated_file(
    samples: Samples, case_dir: Path, image_path: Path, capsys: Any, fraction: float, command: str
) -> None:
    raw = samples.xnor.raw
    path = _write(case_dir, raw[: int(fraction * len(raw))])
    try:
        _run(path, image_path, capsys, command, valid=False)
    finally:
        path.unlink()


@fuzz(30)
@given(data=st.data(), command=commands)
def test_flipped_bytes(
    samples: Samples, case_dir: Path, image_path: Path, capsys: Any, data: Any, command: str
) -> None:
    raw = bytearray(samples.xnor.raw)
    header_end = 8 + samples.xnor.header_bytes
    in_header = data.draw(st.booleans(), label="in header")
    low, high = (0, header_end - 1) if in_header else (header_end, len(raw) - 1)
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        offset = data.draw(st.integers(low, high), label="offset")
        raw[offset] ^= data.draw(st.integers(1, 255), label="mask")
    path = _write(case_dir, bytes(raw))
    try:
        _run(path, image_path, capsys, command)
    finally:
        path.unlink()


@fuzz(12)
@given(
    claimed=st.one_of(
        st.integers(0, 2**64 - 1),
        st.integers(-64, 64).map(lambda d: max(0, 8000 + d)),
        st.sampled_from([0, 1, 2, 2**63, 2**64 - 1, 100 << 20]),
    ),
    command=commands,
)
def test_lying_header_length(
    samples: Samples, case_dir: Path, image_path: Path, capsys: Any, claimed: int, command: str
) -> None:
    raw = samples.xnor.raw
    if claimed == samples.xnor.header_bytes:
        claimed += 1
    path = _write(case_dir, claimed.to_bytes(8, "little") + raw[8:])
    try:
        _run(path, image_path, capsys, command, valid=False)
    finally:
        path.unlink()


# ---------------------------------------------------------------------- metadata edits


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into the metadata (dict keys and list indices), the root excluded."""
    found = [path] if path else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _nodes(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _nodes(child, (*path, index))
    return found


REPLACEMENTS: list[Any] = [
    2**63, 2**64 + 7, 10**12, -1, 0, 1, -(2**63), 1.5, -0.0, float("nan"), float("inf"),
    -float("inf"), E999, "", "x" * 100_000, "conv2d", "xnor", "same", True, False, None, [],
    {}, [1, 2], {"a": 1},
]  # fmt: skip


def _edit(meta: dict[str, Any], path: tuple[Any, ...], operation: str, value: Any) -> None:
    parent = meta
    for key in path[:-1]:
        parent = parent[key]
    key, node = path[-1], parent[path[-1]]
    if operation == "replace":
        parent[key] = value
    elif operation == "remove":
        parent.pop(key)
    elif operation == "shorten" and isinstance(node, (list, dict, str)) and len(node):
        parent[key] = node[:-1] if not isinstance(node, dict) else dict(list(node.items())[:-1])
    elif operation == "lengthen" and isinstance(node, list):
        node.append(node[-1] if node else 0)
    elif operation == "nest":
        parent[key] = [node]
    elif operation == "nest deeply":
        for _ in range(40):
            node = {"x": node}
        parent[key] = node


def _metadata_text(meta: dict[str, Any]) -> str:
    return json.dumps(meta).replace(json.dumps(E999), "1e999")


def _with_metadata(samples: Samples, folder: Path, text: str,
                   tensors: dict[str, torch.Tensor] | None = None) -> Path:  # fmt: skip
    path = folder / "edited.xnor"
    save_file(tensors or samples.xnor.tensors, str(path), metadata={"xnorlab": text})
    return path


@fuzz(45)
@given(data=st.data(), command=commands)
def test_metadata_edits(
    samples: Samples, case_dir: Path, image_path: Path, capsys: Any, data: Any, command: str
) -> None:
    meta = copy.deepcopy(samples.xnor.meta)
    # the card is free-form; most edits go to the fields the loader reads
    paths = [p for p in _nodes(meta) if p[0] != "card"] + [("card",), ("card", "seed")]
    for _ in range(data.draw(st.integers(1, 2), label="edits")):
        path = data.draw(st.sampled_from(sorted(paths, key=repr)), label="path")
        operation = data.draw(
            st.sampled_from(["replace", "replace", "remove", "shorten", "lengthen", "nest",
                             "nest deeply"]), label="operation")  # fmt: skip
        value = data.draw(st.sampled_from(REPLACEMENTS), label="value")
        with contextlib.suppress(KeyError, IndexError, TypeError):
            _edit(meta, path, operation, value)  # fails when an earlier edit moved the path
    path = _with_metadata(samples, case_dir, _metadata_text(meta))
    try:
        _run(path, image_path, capsys, command)
    finally:
        path.unlink()


# --------------------------------------------------------------------- crafted files


def _conv2(meta: dict[str, Any]) -> Any:
    return meta["layers"]["conv2"]


CRAFTED: dict[str, Callable[[dict[str, Any]], Any]] = {
    "huge num_classes": lambda m: m["architecture"].update(num_classes=10**12),
    "num_classes 2**63": lambda m: m["architecture"].update(num_classes=2**63),
    "fewer class names than classes": lambda m: m.update(class_names=["0", "1", "2"]),
    "huge preprocessing size": lambda m: m["preprocessing"].update(height=10**6, width=10**6),
    "wrong preprocessing size": lambda m: (
        m["preprocessing"].update(height=12, width=12), m.update(input_shape=[1, 12, 12])
    ),
    "groups 0": lambda m: _conv2(m)["geometry"].update(groups=0),
    "unknown padding mode": lambda m: _conv2(m)["geometry"].update(padding_mode="bogus"),
    "stride against the BatchNorm shapes": lambda m: _conv2(m)["geometry"].update(stride=[2, 2]),
    "NaN preprocessing mean": lambda m: m["preprocessing"].update(mean=[float("nan")]),
    "1e999 preprocessing std": lambda m: m["preprocessing"].update(std=[E999]),
    "unknown architecture": lambda m: m["architecture"].update(name="lenet9"),
    "unknown layer mode": lambda m: _conv2(m)["config"].update(mode="ternary"),
}  # fmt: skip


@pytest.mark.parametrize("command", ["predict", "eval"])
@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_metadata(
    samples: Samples, case_dir: Path, image_path: Path, capsys: Any, case: str, command: str
) -> None:
    meta = copy.deepcopy(samples.xnor.meta)
    CRAFTED[case](meta)
    _run(_with_metadata(samples, case_dir, _metadata_text(meta)), image_path, capsys, command,
         valid=False)  # fmt: skip


@pytest.mark.parametrize("command", ["predict", "eval"])
def test_deeply_nested_metadata(
    samples: Samples, case_dir: Path, image_path: Path, capsys: Any, command: str
) -> None:
    text = _metadata_text(samples.xnor.meta)[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    _run(_with_metadata(samples, case_dir, text), image_path, capsys, command, valid=False)


def _scaled(key: str, factor: float) -> Callable[[dict[str, torch.Tensor]], None]:
    def change(tensors: dict[str, torch.Tensor]) -> None:
        tensors[key] = tensors[key] * factor

    return change


TENSOR_EDITS: dict[str, Callable[[dict[str, torch.Tensor]], None]] = {
    "NaN BatchNorm mean": lambda t: t["bn3.running_mean"].__setitem__(0, math.nan),
    "negative BatchNorm variance": _scaled("bn2.running_var", -1.0),
    "infinite float weight": lambda t: t["conv1.weight"].__setitem__((0, 0, 0, 0), math.inf),
    "float64 BatchNorm weight": lambda t: t.update({"bn4.weight": t["bn4.weight"].double()}),
    "bits as float": lambda t: t.update({"fc3.bits": t["fc3.bits"].float()}),
    "alpha too short": lambda t: t.update({"conv2.alpha": t["conv2.alpha"][:10]}),
    "extra tensor": lambda t: t.update({"bn9.weight": torch.zeros(3)}),
    "huge classifier weights": _scaled("fc4.weight", 1e38),
}


@pytest.mark.parametrize("case", sorted(TENSOR_EDITS))
def test_tensor_edits(
    samples: Samples, case_dir: Path, image_path: Path, capsys: Any, case: str
) -> None:
    tensors = {k: v.clone() for k, v in samples.xnor.tensors.items()}
    TENSOR_EDITS[case](tensors)
    path = _with_metadata(samples, case_dir, _metadata_text(samples.xnor.meta), tensors)
    _run(path, image_path, capsys, "predict", valid=False)


def test_the_unchanged_export_predicts_and_evaluates(
    samples: Samples, case_dir: Path, image_path: Path, capsys: Any
) -> None:
    path = _write(case_dir, samples.xnor.raw)
    for command in ("predict", "eval"):
        _run(path, image_path, capsys, command, valid=True)
