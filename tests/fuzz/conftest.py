"""Real files the fuzz cases mutate, made once per session in a temporary folder."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz_support import Samples, XnorSample
from PIL import Image, ImageDraw
from safetensors import safe_open
from safetensors.torch import load_file

from xnorlab.cli.main import main
from xnorlab.models.spec import CHECKPOINT_DIR, DEMO_CHECKPOINTS


def _digit_image() -> Image.Image:
    image = Image.new("L", (56, 56), 255)
    draw = ImageDraw.Draw(image)
    draw.line([(12, 10), (44, 10), (24, 48)], fill=0, width=6)  # a 7, dark ink on paper
    return image


def _encoded(image: Image.Image, kind: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Samples:
    folder = tmp_path_factory.mktemp("fuzz-samples")
    path = folder / "lenet-xnor.xnor"
    assert main(["export", "demo:lenet-xnor", "--out", str(path)]) == 0
    with safe_open(str(path), "pt") as handle:
        meta = json.loads(handle.metadata()["xnorlab"])
    xnor = XnorSample(path, path.read_bytes(), meta, load_file(str(path)))
    digit = _digit_image()
    photo = Image.new("RGB", (40, 30), (200, 120, 40))
    ImageDraw.Draw(photo).ellipse((5, 5, 30, 25), fill=(20, 40, 220))
    return Samples(
        xnor=xnor,
        checkpoint=(CHECKPOINT_DIR / DEMO_CHECKPOINTS["lenet-xnor"]).read_bytes(),
        png=_encoded(digit, "PNG"),
        jpeg=_encoded(digit.convert("RGB"), "JPEG"),
        photo=_encoded(photo, "JPEG"),
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder per test module for the mutated inputs (each case removes its own)."""
    return tmp_path_factory.mktemp("fuzz-work")


@pytest.fixture(scope="module")
def image_path(work: Path, samples: Samples) -> Path:
    """The digit PNG, kept outside the case folders."""
    folder = work.parent / f"{work.name}-images"
    folder.mkdir(exist_ok=True)
    path = folder / "digit.png"
    path.write_bytes(samples.png)
    return path


@pytest.fixture
def case_dir(work: Path) -> Iterator[Path]:
    """An empty folder for one test's cases (emptied again afterwards)."""
    folder = work / "case"
    folder.mkdir(exist_ok=True)
    yield folder
    for item in sorted(folder.rglob("*"), reverse=True):
        item.rmdir() if item.is_dir() and not item.is_symlink() else item.unlink()
