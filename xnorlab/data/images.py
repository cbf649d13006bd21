"""Turn any image a user drops into the tensor a model expects.

``load_image(source, preprocessing)`` accepts a path, raw bytes or a PIL image in any format
Pillow reads (PNG, JPEG, BMP, GIF, WebP, TIFF, ...) and any mode (1-bit, grayscale, 16-bit,
RGB, RGBA, LA, palette with or without transparency, CMYK, YCbCr, float). Steps:

1. decode (first frame of an animation; EXIF orientation applied); a corrupt, truncated, empty or non-image file raises
   ``XnorlabError``;
2. to float ``[0, 1]``: 16-bit data is divided by 65535; transparent pixels are composited on a
   background that *contrasts* with the opaque pixels (white behind dark ink, black behind
   light ink), so a transparent drawing never disappears;
3. channels: luminance ``Y = 0.299 R + 0.587 G + 0.114 B`` for 1-channel models, gray
   replicated for 3-channel models;
4. for models trained on light-on-dark digits (MNIST) the image is inverted when its border is
   mostly light (a photo or scan of dark ink on paper), then cropped to the ink, fitted into a
   20x20 box and centred by centre of mass in 28x28, as MNIST was made;
5. resized (bilinear, antialiased) by the preprocessing's ``resize`` rule and normalized
   ``(x - mean) / std`` per channel.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from xnorlab.common.errors import XnorlabError
from xnorlab.common.files import MIB, read_bounded

RESIZE_RULES = ("stretch", "crop", "digit")
# Larger files are refused before reading: no photo needs more, and a device never ends.
MAX_IMAGE_BYTES = 256 * MIB
# The image files the lab opens (data folders, drops, Open image); Pillow decodes them all.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
ImageSource = str | Path | bytes | Image.Image
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects as input, and how any image is turned into it.

    ``resize``: ``stretch`` (to ``height x width``), ``crop`` (shorter side to the size, then a
    centre crop) or ``digit`` (MNIST-style: ink cropped, fitted into 20/28 of the frame,
    centred by centre of mass). ``light_on_dark``: the model was trained on light strokes on a
    dark background (MNIST); light-background images are inverted.
    """

    channels: int = 3
    height: int = 32
    width: int = 32
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    resize: str = "stretch"
    light_on_dark: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise XnorlabError(f"preprocessing: channels must be 1 or 3, got {self.channels}")
        if self.height < 1 or self.width < 1:
            raise XnorlabError(f"preprocessing: bad size {self.height}x{self.width}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise XnorlabError("preprocessing: mean and std need one value per channel")
        if any(not s > 0 for s in self.std):
            raise XnorlabError("preprocessing: std values must be > 0")
        if self.resize not in RESIZE_RULES:
            raise XnorlabError(f"preprocessing: resize must be one of {', '.join(RESIZE_RULES)}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one model input."""
        return (self.channels, self.height, self.width)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples as lists)."""
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    @classmethod
    def from_json(cls, data: Any) -> Preprocessing:
        """Inverse of ``to_json``; bad data raises ``XnorlabError``."""
        if not isinstance(data, dict):
            raise XnorlabError("preprocessing must be a JSON object")
        try:
            return cls(
                channels=int(data["channels"]),
                height=int(data["height"]),
                width=int(data["width"]),
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
                resize=str(data.get("resize", "stretch")),
                light_on_dark=bool(data.get("light_on_dark", False)),
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise XnorlabError(f"bad preprocessing record: {exc!r}") from None

    def normalize(self, pixels: Tensor) -> Tensor:
        """``(x - mean) / std`` per channel of a ``(C, H, W)`` or ``(N, C, H, W)`` tensor."""
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=pixels.dtype).reshape(shape)
        std = torch.tensor(self.std, dtype=pixels.dtype).reshape(shape)
        return (pixels - mean) / std

    def denormalize(self, tensor: Tensor) -> Tensor:
        """Inverse of ``normalize``: back to pixel values in ``[0, 1]``."""
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=tensor.dtype).reshape(shape)
        std = torch.tensor(self.std, dtype=tensor.dtype).reshape(shape)
        return tensor * std + mean


MNIST_PREPROCESSING = Preprocessing(
    channels=1,
    height=28,
    width=28,
    mean=(0.1307,),
    std=(0.3081,),
    resize="digit",
    light_on_dark=True,
)
IMAGENET_PREPROCESSING = Preprocessing(
    channels=3,
    height=224,
    width=224,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    resize="crop",
)


def _describe(source: ImageSource) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    return "the image data" if isinstance(source, bytes) else "the image"


def open_image(source: ImageSource) -> Image.Image:
    """Decode ``source`` fully (first frame); every decoding failure -> ``XnorlabError``."""
    if isinstance(source, Image.Image):
        return source
    name = _describe(source)
    if isinstance(source, bytes):
        data = source
    else:
        data = read_bounded(source, what="image", max_bytes=MAX_IMAGE_BYTES)
    if not data:
        raise XnorlabError(f"{name} is empty (0 bytes), not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.seek(0)
            image.load()
    except UnidentifiedImageError:
        raise XnorlabError(f"{name} is not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise XnorlabError(f"{name} is too large to open safely") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise XnorlabError(f"{name} is corrupt or truncated ({exc})") from None
    if image.width < 1 or image.height < 1:
        raise XnorlabError(f"{name} has no pixels")
    return _upright(image)


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (phone photos); images without EXIF are returned as is."""
    try:
        rotated = ImageOps.exif_transpose(image)
    except (OSError, ValueError, TypeError, KeyError, ZeroDivisionError):
        return image  # a broken EXIF block: keep the pixels as stored
    return rotated if rotated is not None else image


def _high_bit_depth(image: Image.Image) -> np.ndarray | None:
    """Gray values in ``[0, 1]`` for 16/32-bit integer and float images, else None."""
    if image.mode.startswith("I"):
        values = np.asarray(image).astype(np.float64)
        return np.clip(values / 65535.0, 0.0, 1.0)
    if image.mode == "F":
        values = np.nan_to_num(np.asarray(image).astype(np.float64))
        scale = 255.0 if values.max(initial=0.0) > 1.0 else 1.0
        return np.clip(values / scale, 0.0, 1.0)
    return None


def _rgb_alpha(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """``(H, W, 3)`` RGB in ``[0, 1]`` and ``(H, W)`` alpha in ``[0, 1]`` (None if opaque)."""
    gray = _high_bit_depth(image)
    if gray is not None:
        return np.repeat(gray[:, :, None], 3, axis=2), None
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    )
    converted = image.convert("RGBA" if has_alpha else "RGB")
    values = np.asarray(converted).astype(np.float64) / 255.0
    if has_alpha:
        return values[:, :, :3], values[:, :, 3]
    return values, None


def _composite(rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Put transparent pixels on white, or on black when the opaque pixels are light."""
    if alpha is None:
        return rgb
    weight = alpha.sum()
    opaque_luma = float((rgb @ np.array(_LUMA) * alpha).sum() / weight) if weight > 0 else 0.0
    background = 0.0 if opaque_luma > 0.5 else 1.0
    mixed: np.ndarray = rgb * alpha[:, :, None] + background * (1.0 - alpha[:, :, None])
    return mixed


def image_to_array(source: ImageSource) -> np.ndarray:
    """Decode ``source`` to an ``(H, W, 3)`` float RGB array in ``[0, 1]`` (alpha composited)."""
    image = open_image(source)
    try:
        rgb, alpha = _rgb_alpha(image)
    except (OSError, ValueError) as exc:
        raise XnorlabError(
            f"{_describe(source)}: cannot convert mode {image.mode} ({exc})"
        ) from None
    return _composite(rgb, alpha)


def _resize(pixels: Tensor, height: int, width: int) -> Tensor:
    """Bilinear, antialiased resize of a ``(C, H, W)`` tensor."""
    if tuple(pixels.shape[1:]) == (height, width):
        return pixels
    out = F.interpolate(
        pixels[None], size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )
    return out[0].clamp(0.0, 1.0)


def _crop_resize(pixels: Tensor, height: int, width: int) -> Tensor:
    """Scale so the image covers ``height x width``, then take the centre."""
    _, h, w = pixels.shape
    scale = max(height / h, width / w)
    new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    scaled = _resize(pixels, new_h, new_w)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return scaled[:, top : top + height, left : left + width]


def _border_is_light(gray: Tensor) -> bool:
    """True when the median of the outer 1-pixel frame is above mid-gray."""
    frame = torch.cat([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return float(frame.median()) > 0.5


def _digit_layout(gray: Tensor, height: int, width: int) -> Tensor:
    """MNIST layout of a light-on-dark ``(H, W)`` image: fit the ink into 20/28, centre of mass."""
    ink = gray - float(gray.min())
    peak = float(ink.max())
    if peak <= 1e-6:
        return torch.zeros(height, width)
    rows = torch.nonzero((ink > 0.25 * peak).any(dim=1)).flatten()
    cols = torch.nonzero((ink > 0.25 * peak).any(dim=0)).flatten()
    crop = ink[int(rows[0]) : int(rows[-1]) + 1, int(cols[0]) : int(cols[-1]) + 1] / peak
    box_h, box_w = max(1, round(height * 20 / 28)), max(1, round(width * 20 / 28))
    scale = min(box_h / crop.shape[0], box_w / crop.shape[1])
    new_h = max(1, min(box_h, round(crop.shape[0] * scale)))
    new_w = max(1, min(box_w, round(crop.shape[1] * scale)))
    glyph = _resize(crop[None], new_h, new_w)[0]
    canvas = torch.zeros(height, width)
    mass = glyph.sum().clamp_min(1e-9)
    com_y = float((glyph.sum(dim=1) * torch.arange(new_h)).sum() / mass)
    com_x = float((glyph.sum(dim=0) * torch.arange(new_w)).sum() / mass)
    top = min(max(round(height / 2 - com_y - 0.5), 0), height - new_h)
    left = min(max(round(width / 2 - com_x - 0.5), 0), width - new_w)
    canvas[top : top + new_h, left : left + new_w] = glyph
    return canvas


@dataclass(frozen=True)
class PreparedImage:
    """A model input and the preprocessing steps that made it, in order, for the views."""

    tensor: Tensor
    steps: tuple[str, ...]


def _already_model_input(rgb: Tensor, prep: Preprocessing) -> bool:
    """True when the image has the model's size and mode already (e.g. a 28x28 grayscale
    MNIST digit, light on dark): such an image is used as it is, never re-laid out."""
    if tuple(rgb.shape[1:]) != (prep.height, prep.width):
        return False
    if prep.channels == 1 and not bool((rgb[0] == rgb[1]).all() and (rgb[1] == rgb[2]).all()):
        return False
    return not (prep.light_on_dark and _border_is_light(rgb[0]))


def _gray_input(rgb: Tensor, prep: Preprocessing, steps: list[str]) -> Tensor:
    luma = torch.tensor(_LUMA, dtype=rgb.dtype).reshape(3, 1, 1)
    gray = (rgb * luma).sum(dim=0)
    steps.append("grayscale")
    if prep.light_on_dark and _border_is_light(gray):
        gray = 1.0 - gray
        steps.append("inverted (light background)")
    if prep.resize == "digit":
        steps.append(f"digit layout (ink fitted into 20/28 of {prep.height}x{prep.width})")
        return _digit_layout(gray, prep.height, prep.width)[None]
    return gray[None]


def prepare_input(rgb: Tensor, preprocessing: Preprocessing) -> PreparedImage:
    """``(3, H, W)`` RGB pixels in ``[0, 1]`` -> the normalized ``(C, h, w)`` model input."""
    prep = preprocessing
    steps: list[str] = []
    if _already_model_input(rgb, prep):
        pixels = rgb[:1] if prep.channels == 1 else rgb
        steps.append(f"taken as it is ({prep.height}x{prep.width}, the model's input)")
    elif prep.light_on_dark or prep.channels == 1:
        pixels = _gray_input(rgb, prep, steps)
        if prep.channels == 3:
            pixels = pixels.expand(3, -1, -1)
    else:
        pixels = rgb
    if tuple(pixels.shape[1:]) != (prep.height, prep.width):
        crop = prep.resize == "crop"
        pixels = (_crop_resize if crop else _resize)(pixels, prep.height, prep.width)
        steps.append(f"{'centre crop and ' if crop else ''}resize to {prep.height}x{prep.width}")
    steps.append("normalized (mean/std)")
    tensor = prep.normalize(pixels.to(torch.float32).contiguous())
    return PreparedImage(tensor, tuple(steps))


def pixels_to_input(rgb: Tensor, preprocessing: Preprocessing) -> Tensor:
    """The tensor of ``prepare_input``."""
    return prepare_input(rgb, preprocessing).tensor


def prepare_image(source: ImageSource, preprocessing: Preprocessing) -> PreparedImage:
    """Load any image (path, bytes or PIL image) as a model input with its preprocessing steps.

    Raises ``XnorlabError`` for missing, empty, corrupt, truncated or non-image input.
    """
    rgb = torch.from_numpy(image_to_array(source).astype(np.float32)).permute(2, 0, 1)
    return prepare_input(rgb, preprocessing)


def load_image(source: ImageSource, preprocessing: Preprocessing) -> Tensor:
    """The normalized ``(C, H, W)`` float32 tensor of ``prepare_image``."""
    return prepare_image(source, preprocessing).tensor
