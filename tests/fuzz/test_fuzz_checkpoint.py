"""Damaged checkpoints (``.pt``, ``.safetensors``) through ``xnorlab predict``.

None of these files is a full pickle, so no error may ask for ``--trust``: a damaged file is
"corrupt or not a checkpoint", whatever its name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fuzz_support import Samples, check_predictions, fuzz, run_case
from hypothesis import given
from hypothesis import strategies as st

from xnorlab.models.checkpoint import save_checkpoint
from xnorlab.models.spec import load_model_spec


@pytest.fixture(scope="module")
def safetensors_checkpoint(work: Path) -> bytes:
    loaded = load_model_spec("demo:lenet-xnor")
    meta = {"arch": "lenet", "class_names": loaded.class_names}
    return save_checkpoint(work / "lenet.safetensors", loaded.model, meta).read_bytes()


def _predict(path: Path, image: Path, capsys: Any, valid: bool | None = None) -> None:
    outcome = run_case(["predict", path, image, "--json"], capsys, path.parent, valid=valid)
    if outcome.code == 0:
        check_predictions(outcome, images=1, topk=3)
    assert "trust" not in outcome.err, outcome.describe()


@fuzz(15)
@given(fraction=st.floats(0.0, 1.0, exclude_max=True), suffix=st.sampled_from([".pt", ".pth"]))
def test_truncated_checkpoint(
    samples: Samples, case_dir: Path, image_path: Path, capsys: Any, fraction: float, suffix: str
) -> None:
    path = case_dir / f"cut{suffix}"
    path.write_bytes(samples.checkpoint[: int(fraction * len(samples.checkpoint))])
    try:
        _predict(path, image_path, capsys, valid=False)
    finally:
        path.unlink()


@fuzz(15)
@given(data=st.data())
def test_flipped_checkpoint_bytes(
    samples: Samples, case_dir: Path, image_path: Path, capsys: Any, data: Any
) -> None:
    raw = bytearray(samples.checkpoint)
    for _ in range(data.draw(st.integers(1, 3), label="flips")):
        raw[data.draw(st.integers(0, len(raw) - 1), label="offset")] ^= data.draw(
            st.integers(1, 255), label="mask"
        )
    path = case_dir / "flipped.pt"
    path.write_bytes(bytes(raw))
    try:
        _predict(path, image_path, capsys)
    finally:
        path.unlink()


@fuzz(10)
@given(
    noise=st.binary(min_size=0, max_size=4096),
    prefix=st.sampled_from([b"", b"\x80\x02", b"\x80\x04\x95", b"PK\x03\x04", b"{}"]),
    suffix=st.sampled_from([".pt", ".pth", ".ckpt", ".safetensors", ".ts"]),
)
def test_random_bytes_named_like_a_checkpoint(
    case_dir: Path, image_path: Path, capsys: Any, noise: bytes, prefix: bytes, suffix: str
) -> None:
    path = case_dir / f"noise{suffix}"
    path.write_bytes(prefix + noise)
    try:
        _predict(path, image_path, capsys, valid=False)
    finally:
        path.unlink()


@fuzz(12)
@given(data=st.data())
def test_damaged_safetensors_checkpoint(
    safetensors_checkpoint: bytes, case_dir: Path, image_path: Path, capsys: Any, data: Any
) -> None:
    raw = bytearray(safetensors_checkpoint)
    header_end = 8 + int.from_bytes(raw[:8], "little")
    damage = data.draw(st.sampled_from(["cut", "flip header", "lie about length"]), label="damage")
    if damage == "cut":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="length")]
    elif damage == "flip header":
        raw[data.draw(st.integers(0, header_end - 1), label="offset")] ^= data.draw(
            st.integers(1, 255), label="mask"
        )
    else:
        claimed = data.draw(st.integers(0, 2**64 - 1), label="claimed length")
        raw[:8] = claimed.to_bytes(8, "little")
    path = case_dir / "damaged.safetensors"
    path.write_bytes(bytes(raw))
    try:
        _predict(path, image_path, capsys)
    finally:
        path.unlink()


def test_the_intact_checkpoints_predict(
    samples: Samples, safetensors_checkpoint: bytes, case_dir: Path, image_path: Path, capsys: Any
) -> None:
    for name, data in (("ok.pt", samples.checkpoint), ("ok.safetensors", safetensors_checkpoint)):
        path = case_dir / name
        path.write_bytes(data)
        _predict(path, image_path, capsys, valid=True)
        path.unlink()
