"""Data stage: turn a configured scene into the normalised arrays of results/data/{scene}.

Output folder (see docs/architecture.md):
    meta.json                {"scene", "source", "height", "width", "focal", "camera_angle_x", "near",
                              "far", "splits": {"train", "val", "test"}, "has_depth", "has_normals",
                              "downscale", "val_from_test"}
    {split}_rgba.npy         [N, H, W, 4] float32, straight alpha
    {split}_poses.npy        [N, 4, 4] float32 camera-to-world (Blender convention)
    {split}_depth.npy        [N, H, W] float32 camera z-depth, 0 = background     (ground truth only)
    {split}_normals.npy      [N, H, W, 3] float32 world-space unit normals, 0 = background (ditto)
    {split}_rgba_s{f}.npy    [N, H/f, W/f, 4] f = 2, 4, 8: with `multiscale: true` only (meta "multiscale",
                             "scales"), mip-NeRF's multiscale protocol (nerfpipe.data.multiscale)
    blender/                 synthetic scenes only: the generated Blender-format dataset

Synthetic scenes are generated into blender/ and loaded back through `load_blender_split`, so
the generator and the real-data loader share one path. Real datasets without a val split
(Shiny Blender ships train and test only) use up to `VAL_FROM_TEST_MAX` evenly spaced test views
as val (meta "val_from_test": true); val only monitors training, the test split stays complete.
The folder is built in a temporary sibling and renamed into place at the end, so a failure
leaves the previous output untouched and nothing partial behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from nerfpipe import io as nio
from nerfpipe.cameras import focal_from_fov
from nerfpipe.data.blender import BlenderSplit, load_blender_split
from nerfpipe.data.multiscale import SCALES, check_divisible, multiscale_rgba, scaled_name
from nerfpipe.data.splits import SPLITS
from nerfpipe.data.synthetic import SCENES, generate_scene
from nerfpipe.errors import NerfpipeError
from nerfpipe.guard import check_output_dir, write_marker
from nerfpipe.io import make_temp_dir, replace_dir
from nerfpipe.schema import schema_defaults

VAL_FROM_TEST_MAX = 10
# What a data folder written before stage markers existed may hold (it may be replaced).
LEGACY_ENTRIES = ("meta.json", "blender", *(f"{s}_{k}.npy" for s in SPLITS
                                             for k in ("rgba", "poses", "depth", "normals")))
SYNTHETIC_KEYS = ("resolution", "n_train", "n_val", "n_test", "seed")


def _int_setting(name: str, scene: dict, key: str, default: int, minimum: int) -> int:
    value = scene.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise NerfpipeError(f"scene {name!r}: {key} must be an integer >= {minimum}, got {value!r}")
    return value


def _float_setting(name: str, scene: dict, key: str, default: float) -> float:
    value = scene.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise NerfpipeError(f"scene {name!r}: {key} must be a finite number, got {value!r}")
    return float(value)


def _load_splits(root: Path, downscale: int) -> tuple[dict[str, BlenderSplit], bool]:
    splits: dict[str, BlenderSplit] = {}
    for split in ("train", "test"):
        splits[split] = load_blender_split(root, split, downscale)
    val_from_test = not (root / "transforms_val.json").exists()
    if val_from_test:
        test = splits["test"]
        n = len(test.file_paths)
        idx = np.unique(np.linspace(0, n - 1, min(n, VAL_FROM_TEST_MAX)).round().astype(np.int64))
        splits["val"] = BlenderSplit(
            rgba=test.rgba[idx], poses=test.poses[idx], camera_angle_x=test.camera_angle_x,
            file_paths=[test.file_paths[i] for i in idx],
            depth=None if test.depth is None else test.depth[idx],
            normals=None if test.normals is None else test.normals[idx])
    else:
        splits["val"] = load_blender_split(root, "val", downscale)
    # One camera model for the whole scene.
    ref = splits["train"]
    for split in ("val", "test"):
        s = splits[split]
        if s.rgba.shape[1:3] != ref.rgba.shape[1:3]:
            raise NerfpipeError(f"{root / f'transforms_{split}.json'}: images are "
                                f"{s.rgba.shape[1]}x{s.rgba.shape[2]} but train images are "
                                f"{ref.rgba.shape[1]}x{ref.rgba.shape[2]}")
        if abs(s.camera_angle_x - ref.camera_angle_x) > 1e-6:
            raise NerfpipeError(f"{root / f'transforms_{split}.json'}: camera_angle_x {s.camera_angle_x} "
                                f"differs from the train split's {ref.camera_angle_x}")
    return {k: splits[k] for k in SPLITS}, val_from_test


def prepare_scene(name: str, scene: dict, out_dir: Path) -> None:
    """Data stage: write results/data/{scene} (see the module docstring) from a scene's settings.

    scene: {"synthetic": one of synthetic.SCENES ("diffuse", "glossy", "thin", "mirror"), "resolution",
    "n_train", "n_val", "n_test", "seed"}
    or {"path": folder of a Blender-format dataset}; both may carry "downscale" (default 1),
    "near" (2), "far" (6) and "multiscale" (default false: every view also at 1/2, 1/4, 1/8).
    """
    out_dir = Path(out_dir)
    if not isinstance(scene, dict):
        raise NerfpipeError(f"scene {name!r}: settings must be a mapping, got {type(scene).__name__}")
    is_synthetic = "synthetic" in scene
    if is_synthetic == ("path" in scene):
        raise NerfpipeError(f"scene {name!r}: give exactly one of 'synthetic' or 'path'")
    defaults = schema_defaults("scene_defaults")  # near 2, far 6: Blender scenes and ours alike
    downscale = _int_setting(name, scene, "downscale", defaults["downscale"], 1)
    near = _float_setting(name, scene, "near", defaults["near"])
    far = _float_setting(name, scene, "far", defaults["far"])
    if not 0.0 <= near < far:
        raise NerfpipeError(f"scene {name!r}: need 0 <= near < far, got near={near}, far={far}")
    multiscale = scene.get("multiscale", False)
    if not isinstance(multiscale, bool):
        raise NerfpipeError(f"scene {name!r}: multiscale must be true or false, got {multiscale!r}")
    dataset = None if is_synthetic else Path(str(scene["path"])).expanduser()
    check_output_dir(out_dir, "data", inputs=[dataset] if dataset else [], legacy_names=LEGACY_ENTRIES)

    tmp = make_temp_dir(out_dir)
    try:
        if is_synthetic:
            kind = scene["synthetic"]
            if kind not in SCENES:
                raise NerfpipeError(f"scene {name!r}: synthetic must be one of {', '.join(SCENES)}, "
                                    f"got {kind!r}")
            opts = {k: _int_setting(name, scene, k, defaults[k], 0 if k == "seed" else 1)
                    for k in SYNTHETIC_KEYS}
            root = tmp / "blender"
            generate_scene(kind, root, **opts)
            source = f"synthetic:{kind}"
        else:
            path = scene["path"]
            if not isinstance(path, str | Path) or not str(path):
                raise NerfpipeError(f"scene {name!r}: path must be a folder name, got {path!r}")
            root = dataset
            source = str(path)
        splits, val_from_test = _load_splits(root, downscale)

        height, width = splits["train"].rgba.shape[1:3]
        if multiscale:
            check_divisible(name, int(height), int(width))
        fov = splits["train"].camera_angle_x
        has_depth = all(s.depth is not None for s in splits.values())
        has_normals = all(s.normals is not None for s in splits.values())
        digests = {}
        for split, s in splits.items():
            arrays = {"rgba": s.rgba, "poses": s.poses}
            if has_depth:
                arrays["depth"] = s.depth
            if has_normals:
                arrays["normals"] = s.normals
            for key, array in arrays.items():
                name_npy = f"{split}_{key}.npy"
                digests[name_npy] = nio.save_npy(tmp / name_npy, array.astype(np.float32))
            if multiscale:
                for factor, scaled in multiscale_rgba(s.rgba).items():
                    if factor > 1:
                        digests[scaled_name(split, factor)] = nio.save_npy(tmp / scaled_name(split, factor),
                                                                           scaled)
        meta = {
            "scene": name, "source": source, "height": int(height), "width": int(width),
            "focal": focal_from_fov(int(width), fov), "camera_angle_x": fov, "near": near, "far": far,
            "splits": {k: len(s.file_paths) for k, s in splits.items()},
            "has_depth": has_depth, "has_normals": has_normals, "downscale": downscale,
            "val_from_test": val_from_test,
        }
        if multiscale:  # only then: a single-scale scene's meta (and fingerprint) stays as it was
            meta.update({"multiscale": True, "scales": list(SCALES)})
        # Content identity of the prepared scene: what training and evaluation check their
        # inputs against (a changed image changes it; regenerating the same bytes, or moving
        # the dataset folder, does not).
        identity = {k: v for k, v in meta.items() if k != "source"}
        meta["fingerprint"] = nio.fingerprint({"meta": identity, "arrays": digests})
        nio.write_json(tmp / "meta.json", meta)
        write_marker(tmp, "data")
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
