"""The media the report copies from the runs: per scene x variant, the first seed's evaluation
strip (enlarged with nearest-neighbour pixels when the renders are small, so the page and
report.md show it at a readable size), its orbit GIFs (figures/) and orbit mp4 (videos/)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nerfpipe.io import write_bytes
from nerfpipe.reporting import files
from nerfpipe.reporting.collect import require
from nerfpipe.reporting.content import RunMedia
from nerfpipe.reporting.files import STRIP_VIEW
from nerfpipe.reporting.manifest import Manifest

MIN_STRIP_HEIGHT = 256  # a strip lower than this (pixels) is enlarged by a whole factor to reach it
MAX_STRIP_WIDTH = 4096  # ... unless that would make it wider than this
GIF_KINDS = ("rgb", "depth", "normal")


def copy_file(src: Path, dst: Path) -> None:
    write_bytes(dst, require(src).read_bytes())


def strip_scale(height: int, width: int) -> int:
    """The whole enlargement factor of a strip of `height` x `width` pixels (1: kept as it is)."""
    if height >= MIN_STRIP_HEIGHT:
        return 1
    return max(1, min(math.ceil(MIN_STRIP_HEIGHT / height), MAX_STRIP_WIDTH // width))


def copy_strip(src: Path, dst: Path) -> None:
    """Copy a PNG, enlarged by `strip_scale` with nearest-neighbour pixels (each pixel a block)."""
    import imageio.v3 as iio

    data = require(src).read_bytes()
    image = iio.imread(data, extension=".png")
    scale = strip_scale(*image.shape[:2])
    if scale > 1:
        image = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
        data = iio.imwrite("<bytes>", image, extension=".png")
    write_bytes(dst, data)


def copy_media(m: Manifest, out_dir: Path) -> dict[tuple[str, str], RunMedia]:
    """Copy the first seed's media of every scene x variant below `out_dir`."""
    media = {}
    seed = m.seeds[0]
    for scene in m.scenes:
        for variant in m.variants:
            run = m.files(scene, variant, seed)
            strip = files.strip(scene, variant, seed)
            copy_strip(run["renders"] / f"{STRIP_VIEW:03d}_strip.png", out_dir / strip)
            gifs = []
            for kind in GIF_KINDS:
                src = run[f"{kind}_gif"]
                if src is None:
                    continue  # the manifest names no normals GIF for this run
                rel = files.orbit_gif(kind, scene, variant, seed)
                copy_file(src, out_dir / rel)
                gifs.append((f"orbit {kind}", rel))
            mp4 = files.orbit_mp4(scene, variant, seed)
            copy_file(run["rgb_mp4"], out_dir / mp4)
            media[(scene, variant)] = RunMedia(seed=seed, strip=strip, gifs=gifs, mp4=mp4)
    return media
