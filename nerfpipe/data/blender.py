"""Loading one split of a Blender-format dataset (NeRF-synthetic, Shiny Blender, our embedded scenes)
into arrays: the split's frames are checked, sized, allocated once and decoded.

A scene folder holds `transforms_{split}.json` = {"camera_angle_x": radians, "frames": [{"file_path":
"./train/r_0", "transform_matrix": 4x4 camera-to-world}, ...]}. Images are paired with cameras
through each frame's `file_path` (".png" appended when it has no image extension), never through
the order of a directory listing. Optional per-frame keys `depth_path` / `normal_path` name float32
.npy files with ground-truth camera z-depth [H, W] and world-space normals [H, W, 3] (written by
`nerfpipe.data.synthetic`); a split has ground truth only when every frame names it.
Shiny Blender's ground-truth normals are read too: when no frame names a `normal_path` and every
frame's image `X.png` has a sibling `X_normal.png`, its RGB decodes to world-space normals
`n = rgb * 2 - 1` (8 bits, as multinerf reads them), set to 0 where the frame's alpha is 0 (background);
downscaling averages them over the foreground pixels of each block and renormalises.
NeRF-synthetic's depth and normal PNGs (`r_i_depth_0000.png`, `r_i_normal_0000.png`) are not read:
their encodings are dataset-specific.

The jobs are split over modules: `transforms` reads and checks the transforms file and every
frame's paths and pose, `frame_files` decodes images and ground truth (pixel formats there),
`downscale` area-averages them; this module puts one split together.

Hostile input is refused with a one-line NerfpipeError before any large allocation:
- every `file_path` / `depth_path` / `normal_path` must name a file inside the scene folder,
  checked lexically (relative, no `..` component, not the folder itself, no control characters);
  symlinks inside the dataset may point anywhere (git-annex / DVC checkouts), so the target of a
  link is not resolved;
- an image whose header declares more than MAX_IMAGE_PIXELS pixels is refused before decoding;
  a .npy ground-truth file whose header declares another shape is refused before loading;
- the decoded arrays of a split (N x H x W x 4 x 4 bytes, plus ground truth) must fit in
  MAX_SPLIT_BYTES (environment override NERFPIPE_MAX_SPLIT_BYTES); they are allocated once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfpipe.data.checks import byte_limit, format_bytes, is_file, short_repr
from nerfpipe.data.downscale import downscale_depth, downscale_rgba
from nerfpipe.data.frame_files import image_size, read_ground_truth, read_image, read_normal_png
from nerfpipe.data.transforms import check_frames, read_transforms
from nerfpipe.errors import NerfpipeError

# Largest decoded split (rgba + ground truth, float32); NERFPIPE_MAX_SPLIT_BYTES overrides it.
MAX_SPLIT_BYTES = 16 * 2**30
MAX_SPLIT_BYTES_ENV = "NERFPIPE_MAX_SPLIT_BYTES"


@dataclass
class BlenderSplit:
    """One split of a Blender-format scene.

    rgba: [N, H, W, 4] float32, straight alpha in [0, 1]; poses: [N, 4, 4] float32 camera-to-world;
    camera_angle_x: horizontal field of view (radians); file_paths: the frames' file_path entries;
    depth: [N, H, W] float32 z-depth (0 = background) or None; normals: [N, H, W, 3] or None.
    """

    rgba: np.ndarray
    poses: np.ndarray
    camera_angle_x: float
    file_paths: list[str]
    depth: np.ndarray | None = None
    normals: np.ndarray | None = None


def load_blender_split(root: Path, split: str, downscale: int = 1) -> BlenderSplit:
    """Load `root/transforms_{split}.json` and its images (optionally area-downscaled by `downscale`).

    All frames are checked (keys, paths, poses) before any image is decoded; the first image's
    header fixes the size, and the split's arrays are allocated once, after the MAX_SPLIT_BYTES
    check.
    """
    root = Path(root)
    try:
        is_dir = root.is_dir()
    except (OSError, ValueError):
        is_dir = False
    if not is_dir:
        raise NerfpipeError(f"{root}: scene folder not found")
    tf_path = root / f"transforms_{split}.json"
    fov, frames = read_transforms(tf_path, split)
    if isinstance(downscale, bool) or not isinstance(downscale, int) or downscale < 1:
        raise NerfpipeError(f"{tf_path}: downscale must be an integer >= 1, got {downscale!r}")
    checked, has_depth, has_normals = check_frames(root, tf_path, frames)

    n = len(checked)
    rgba = poses = depths = normals = None
    size: tuple[int, int] | None = None
    first_image: Path | None = None
    for i, frame in enumerate(checked):
        where = f"{tf_path} frame {i}"
        img_path = frame.image
        if not is_file(img_path):
            raise NerfpipeError(f"{img_path}: image of {where} (file_path {short_repr(frame.file_path)}) "
                                "not found")
        h, w = image_size(img_path)  # header only
        if size is None:
            size, first_image = (h, w), img_path
            if h % downscale or w % downscale:
                raise NerfpipeError(f"{img_path}: downscale factor {downscale} does not divide the "
                                    f"image size {h}x{w}")
            hd, wd = h // downscale, w // downscale
            floats = 4 + (1 if has_depth else 0) + (3 if has_normals else 0)
            need = n * hd * wd * floats * 4
            limit = byte_limit(MAX_SPLIT_BYTES_ENV, MAX_SPLIT_BYTES)
            if need > limit:
                gt = " incl. depth/normals" if has_depth else ""
                raise NerfpipeError(
                    f"{tf_path}: split {split!r} has {n} frames of {w}x{h} (downscale {downscale}); decoding "
                    f"them needs about {format_bytes(need)} ({n} x {hd} x {wd} x {floats} floats x 4 bytes"
                    f"{gt}), more than the limit of {format_bytes(limit)} (MAX_SPLIT_BYTES; set "
                    f"{MAX_SPLIT_BYTES_ENV} to change it)")
            rgba = np.empty((n, hd, wd, 4), np.float32)
            poses = np.empty((n, 4, 4), np.float32)
            depths = np.empty((n, hd, wd), np.float32) if has_depth else None
            normals = np.empty((n, hd, wd, 3), np.float32) if has_normals else None
        elif (h, w) != size:
            raise NerfpipeError(f"{img_path}: image is {h}x{w} but {first_image} is {size[0]}x{size[1]} "
                                f"(all images of a split must have one size)")
        image = read_image(img_path)
        if image.shape[:2] != (h, w):
            raise NerfpipeError(f"{img_path}: decoded image is {image.shape[0]}x{image.shape[1]} but its "
                                f"header declares {h}x{w}")
        rgba[i] = downscale_rgba(image, downscale)
        alpha = image[..., 3].copy() if frame.normals_png else None
        del image
        poses[i] = frame.pose
        if frame.normals_png:
            # Averaged over each block's foreground (alpha > 0) pixels, like the depth-masked normals.
            _, normals[i] = downscale_depth((alpha > 0).astype(np.float32),
                                            read_normal_png(frame.normals, alpha), downscale)
        if has_depth:
            d = read_ground_truth(frame.depth, (h, w), "depth")
            nrm = read_ground_truth(frame.normals, (h, w, 3), "normals") \
                if has_normals and not frame.normals_png else None
            d, nrm = downscale_depth(d, nrm, downscale)
            depths[i] = d
            if nrm is not None:
                normals[i] = nrm
    return BlenderSplit(
        rgba=rgba,
        poses=poses,
        camera_angle_x=fov,
        file_paths=[f.file_path for f in checked],
        depth=depths,
        normals=normals,
    )
