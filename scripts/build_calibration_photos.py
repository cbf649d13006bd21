"""Build the bundled calibration photos (the one documented command).

    .venv/bin/python scripts/build_calibration_photos.py [--out DIR]

Takes eight public-domain / CC0 photos from scikit-image's sample data (a dev dependency: the
app reads the written files with Pillow and never imports scikit-image), scales each so its
shorter side is ``SHORT_SIDE`` pixels (Lanczos), writes them as baseline JPEG (quality
``QUALITY``, no metadata) and writes ``README.md`` with each file's source and licence, as
stated in the scikit-image docstring of the image. Default output:
``xnorlab/resources/calibration``. The file list and order are
``xnorlab.data.calibration.PHOTO_FILES``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from xnorlab.data.calibration import PHOTO_FILES, calibration_dir

SHORT_SIDE = 256
QUALITY = 88
# file -> (skimage.data function, what it shows, licence as stated in its docstring)
SOURCES = {
    "astronaut.jpg": ("astronaut", "astronaut Eileen Collins (NASA)",
                      "public domain (\"No known copyright restrictions, released into the "
                      "public domain\", NASA Great Images)"),
    "chelsea.jpg": ("chelsea", "Chelsea the cat",
                    "CC0 by the photographer (Stefan van der Walt)"),
    "coffee.jpg": ("coffee", "a coffee cup (Pikolo Espresso Bar)",
                   "CC0 by the photographer (Rachel Michetti)"),
    "rocket.jpg": ("rocket", "launch of DSCOVR on Falcon 9 (SpaceX)",
                   "public domain (released by SpaceX)"),
    "hubble_deep_field.jpg": ("hubble_deep_field", "Hubble eXtreme Deep Field (NASA)",
                              "public domain (NASA media guidelines)"),
    "retina.jpg": ("retina", "fundus photograph of a human retina (Wikimedia Commons)",
                   "CC0 1.0 (Mikael Häggström)"),
    "camera.jpg": ("camera", "a man with a camera (grayscale)",
                   "CC0 by the photographer (Lav Varshney)"),
    "brick.jpg": ("brick", "a brick wall (grayscale, from CC0Textures)",
                  "CC0 (CC0Textures, Bricks25)"),
}  # fmt: skip


def load_source(function: str) -> np.ndarray:
    """The image array of ``skimage.data.<function>``."""
    import skimage.data

    image: np.ndarray = getattr(skimage.data, function)()
    return image


def shrink(image: np.ndarray, short_side: int = SHORT_SIDE) -> Image.Image:
    """A Pillow image whose shorter side is ``short_side`` pixels (never enlarged)."""
    picture = Image.fromarray(image)
    scale = short_side / min(picture.size)
    if scale >= 1.0:
        return picture
    size = (round(picture.width * scale), round(picture.height * scale))
    return picture.resize(size, Image.Resampling.LANCZOS)


def readme(sizes: dict[str, tuple[int, int, int]]) -> str:
    """The folder's README: one row per file with its source and licence."""
    rows = [
        f"| `{name}` | {w}x{h} | {kb / 1024:.0f} KiB | `skimage.data.{SOURCES[name][0]}()`: "
        f"{SOURCES[name][1]} | {SOURCES[name][2]} |"
        for name, (w, h, kb) in sizes.items()
    ]
    return "\n".join([
        "# Bundled calibration photos",
        "",
        "Unlabelled real photos that `xnorlab.data.calibration` feeds a model when no data set",
        "is open (activation histograms, sign flips, K maps, errors vs float in the app and in",
        "reports). They are never used to measure accuracy. Built by",
        f"`scripts/build_calibration_photos.py` from scikit-image {_skimage_version()}'s sample",
        f"data: shorter side scaled to {SHORT_SIDE} px (Lanczos), JPEG quality {QUALITY}. Each",
        "licence is the one stated in the scikit-image docstring of the image; only public",
        "domain and CC0 images were taken.",
        "",
        "| file | size | bytes | source | licence |",
        "| --- | --- | --- | --- | --- |",
        *rows,
        "",
    ])  # fmt: skip


def _skimage_version() -> str:
    import skimage

    return str(skimage.__version__)


def build(out_dir: Path) -> dict[str, tuple[int, int, int]]:
    """Write every photo and the README into ``out_dir``; returns name -> (w, h, bytes)."""
    if set(SOURCES) != set(PHOTO_FILES):
        raise SystemExit("SOURCES and xnorlab.data.calibration.PHOTO_FILES list different files")
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, tuple[int, int, int]] = {}
    for name in PHOTO_FILES:
        picture = shrink(load_source(SOURCES[name][0]))
        path = out_dir / name
        picture.save(path, "JPEG", quality=QUALITY, optimize=True)
        sizes[name] = (picture.width, picture.height, path.stat().st_size)
    (out_dir / "README.md").write_text(readme(sizes), encoding="utf-8")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=calibration_dir(), help="output folder")
    args = parser.parse_args()
    sizes = build(args.out)
    total = sum(size for _, _, size in sizes.values())
    print(f"wrote {len(sizes)} photos ({total / 1024:.0f} KiB) and README.md to {args.out}")


if __name__ == "__main__":
    main()
