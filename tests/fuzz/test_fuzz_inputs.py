"""Mode files (``--modes FILE``) and image files (``predict``): damaged, crafted, odd kinds."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from fuzz_support import Samples, check_predictions, fuzz, make_fifo, run_case
from hypothesis import given
from hypothesis import strategies as st

# ------------------------------------------------------------------------------ mode files

VALID_MODE_FILES = [
    {"preset": "paper", "layers": {"conv2": "bwn"}},
    {"conv1": "float", "conv2": "xnor", "fc3": "bwn", "fc4": "float"},
]
json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def _layers(path: Path, capsys: Any, valid: bool | None = None) -> None:
    """``xnorlab layers demo:lenet --modes FILE --json``; a success lists LeNet's 4 layers."""
    outcome = run_case(["layers", "demo:lenet", "--modes", path, "--json"], capsys, path.parent,
                       valid=valid)  # fmt: skip
    if outcome.code == 0:
        layers = json.loads(outcome.out)["layers"]
        assert [row["name"] for row in layers] == ["conv1", "conv2", "fc3", "fc4"]
        assert all(row["mode"] in ("float", "bwn", "xnor") for row in layers)


@fuzz(20)
@given(data=st.data())
def test_mode_file_edits(case_dir: Path, capsys: Any, data: Any) -> None:
    content: Any = json.loads(json.dumps(data.draw(st.sampled_from(VALID_MODE_FILES))))
    edit = data.draw(st.sampled_from(["value", "key", "whole", "layers"]), label="edit")
    value = data.draw(json_values, label="value")
    if edit == "value":
        content[data.draw(st.sampled_from(sorted(content)), label="key")] = value
    elif edit == "key":
        content[data.draw(st.text(max_size=30), label="new key")] = value
    elif edit == "layers":
        content["layers"] = value
    else:
        content = value
    path = case_dir / "modes.json"
    path.write_text(json.dumps(content))
    try:
        _layers(path, capsys)
    finally:
        path.unlink()


@fuzz(15)
@given(data=st.data())
def test_mode_file_bytes_damaged(case_dir: Path, capsys: Any, data: Any) -> None:
    raw = bytearray(json.dumps(data.draw(st.sampled_from(VALID_MODE_FILES))).encode())
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="length")]
    else:
        raw[data.draw(st.integers(0, len(raw) - 1), label="offset")] ^= data.draw(
            st.integers(1, 255), label="mask"
        )
    path = case_dir / "modes.json"
    path.write_bytes(bytes(raw))
    try:
        _layers(path, capsys)
    finally:
        path.unlink()


MODE_FILE_CASES: dict[str, bytes] = {
    "empty": b"",
    "NaN": b'{"conv2": NaN}',
    "1e999 preset": b'{"preset": 1e999}',
    "deeply nested": b'{"layers": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "binary": bytes(range(256)) * 8,
    "Latin-1": '{"conv2": "\xe9"}'.encode("latin-1"),
    "a list": b'["conv2", "xnor"]',
    "a huge layer name": json.dumps({"x" * 1_000_000: "xnor"}).encode(),
    "over the size bound": b'{"conv2": "xnor", "pad": "' + b" " * (9 << 20) + b'"}',
    "the float-only classifier binarized": b'{"fc4": "ternary"}',
}


@pytest.mark.parametrize("case", sorted(MODE_FILE_CASES))
def test_crafted_mode_files(case_dir: Path, capsys: Any, case: str) -> None:
    path = case_dir / "modes.json"
    path.write_bytes(MODE_FILE_CASES[case])
    _layers(path, capsys, valid=False)


@pytest.mark.parametrize("kind", ["folder", "fifo", "missing", "/dev/zero"])
def test_mode_file_that_is_not_a_file(case_dir: Path, capsys: Any, kind: str) -> None:
    path = case_dir / "modes.json"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        make_fifo(path)
    elif kind == "/dev/zero":
        path = Path("/dev/zero")
    outcome = run_case(["layers", "demo:lenet", "--modes", path], capsys, case_dir, valid=False)
    assert str(path) in outcome.err


# ---------------------------------------------------------------------------------- images


def _predict(samples: Samples, path: Path, capsys: Any, valid: bool | None = None) -> None:
    outcome = run_case(["predict", samples.xnor.path, path, "--json", "--topk", "2"], capsys,
                       path.parent, valid=valid)  # fmt: skip
    if outcome.code == 0:
        check_predictions(outcome, images=1, topk=2)


image_kinds = st.sampled_from(["png", "jpeg", "photo"])


def _image_bytes(samples: Samples, kind: str) -> bytes:
    return {"png": samples.png, "jpeg": samples.jpeg, "photo": samples.photo}[kind]


@fuzz(20)
@given(kind=image_kinds, fraction=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_image(
    samples: Samples, case_dir: Path, capsys: Any, kind: str, fraction: float
) -> None:
    raw = _image_bytes(samples, kind)
    path = case_dir / f"cut.{'png' if kind == 'png' else 'jpg'}"
    path.write_bytes(raw[: int(fraction * len(raw))])
    try:
        _predict(samples, path, capsys)
    finally:
        path.unlink()


@fuzz(15)
@given(kind=image_kinds, data=st.data())
def test_flipped_image_bytes(
    samples: Samples, case_dir: Path, capsys: Any, kind: str, data: Any
) -> None:
    raw = bytearray(_image_bytes(samples, kind))
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        raw[data.draw(st.integers(0, len(raw) - 1), label="offset")] ^= data.draw(
            st.integers(1, 255), label="mask"
        )
    path = case_dir / f"flipped.{'png' if kind == 'png' else 'jpg'}"
    path.write_bytes(bytes(raw))
    try:
        _predict(samples, path, capsys)
    finally:
        path.unlink()


def _png(width: int, height: int, rows: bytes = b"") -> bytes:
    """A grayscale PNG that declares ``width x height`` (its pixel data need not fill it)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))  # fmt: skip


def _bmp(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + 12, 0, 0, 54) + info + b"\x00" * 12


def _gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00" + b"\x3b"


IMAGE_CASES: dict[str, tuple[str, Any]] = {
    "zero bytes": ("png", lambda s: b""),
    "PNG magic, JPEG data": ("png", lambda s: b"\x89PNG\r\n\x1a\n" + s.jpeg[8:]),
    "JPEG magic, then text": ("jpg", lambda s: b"\xff\xd8\xff\xe0" + b"not an image" * 10),
    "text named .png": ("png", lambda s: b"hello, I am not a picture\n" * 20),
    "PNG of 100000 x 100000": ("png", lambda s: _png(100_000, 100_000)),
    "PNG of 2**31-1 x 1": ("png", lambda s: _png(2**31 - 1, 1)),
    "PNG of 0 x 0": ("png", lambda s: _png(0, 0)),
    "PNG that lies about its rows": ("png", lambda s: _png(64, 64, b"\x00" * 10)),
    "BMP of 60000 x 60000": ("bmp", lambda s: _bmp(60_000, 60_000)),
    "BMP of negative width": ("bmp", lambda s: _bmp(-5, 5)),
    "GIF of 65535 x 65535, no frame": ("gif", lambda s: _gif(65535, 65535)),
}


@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
def test_crafted_images(samples: Samples, case_dir: Path, capsys: Any, case: str) -> None:
    suffix, make = IMAGE_CASES[case]
    path = case_dir / f"crafted.{suffix}"
    path.write_bytes(make(samples))
    _predict(samples, path, capsys, valid=False)


@pytest.mark.parametrize("kind", ["folder", "fifo", "missing", "/dev/zero", "unreadable"])
def test_image_that_is_not_a_readable_file(
    samples: Samples, case_dir: Path, capsys: Any, kind: str
) -> None:
    path = case_dir / "image.png"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        make_fifo(path)
    elif kind == "/dev/zero":
        path = Path("/dev/zero")
    elif kind == "unreadable":
        path.write_bytes(samples.png)
        path.chmod(0)
        if os.access(path, os.R_OK):  # root reads anything: a file read fine is a valid case
            _predict(samples, path, capsys, valid=True)
            return
    _predict(samples, path, capsys, valid=False)


@pytest.mark.parametrize("kind", ["png", "jpeg", "photo"])
def test_intact_images_predict(samples: Samples, case_dir: Path, capsys: Any, kind: str) -> None:
    path = case_dir / f"ok.{'png' if kind == 'png' else 'jpg'}"
    path.write_bytes(_image_bytes(samples, kind))
    _predict(samples, path, capsys, valid=True)
