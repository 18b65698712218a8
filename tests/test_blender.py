"""Blender-format loader: round trip with the generator, pairing, downscaling, pixel formats, errors."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from nerfpipe.data.blender import load_blender_split
from nerfpipe.data.downscale import downscale_rgba
from nerfpipe.data.synthetic import generate_scene
from nerfpipe.errors import NerfpipeError

IDENTITY = np.eye(4).tolist()


def write_png16(path: Path, x: np.ndarray) -> None:
    """Minimal 16-bit PNG writer (Pillow cannot write 16-bit colour). x: [H, W] or [H, W, C] uint16."""
    h, w = x.shape[:2]
    channels = 1 if x.ndim == 2 else x.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = b"".join(b"\x00" + x[r].astype(">u2").tobytes() for r in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def make_dataset(root: Path, images: dict[str, np.ndarray], frames: list[dict] | None = None,
                 split: str = "train", fov: float = 0.7) -> Path:
    """Write `images` (name -> uint8 array) under root/split and a transforms file listing them."""
    for name, img in images.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        iio.imwrite(root / split / f"{name}.png", img)
    if frames is None:
        frames = [{"file_path": f"./{split}/{name}", "transform_matrix": IDENTITY} for name in images]
    (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": fov, "frames": frames}))
    return root


def rgba_u8(h: int, w: int, value: tuple[int, int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(value, dtype=np.uint8), (h, w, 4)).copy()


def test_round_trip_with_generator(tmp_path: Path) -> None:
    root = tmp_path / "scene"
    generate_scene("glossy", root, resolution=16, n_train=3, n_val=1, n_test=2, seed=1)
    for split, n in (("train", 3), ("val", 1), ("test", 2)):
        s = load_blender_split(root, split)
        meta = json.loads((root / f"transforms_{split}.json").read_text())
        assert s.camera_angle_x == meta["camera_angle_x"]
        assert s.rgba.shape == (n, 16, 16, 4) and s.rgba.dtype == np.float32
        assert s.poses.shape == (n, 4, 4) and s.poses.dtype == np.float32
        assert s.file_paths == [f["file_path"] for f in meta["frames"]]
        for i, frame in enumerate(meta["frames"]):
            png = iio.imread(root / (frame["file_path"][2:] + ".png"))
            np.testing.assert_array_equal(s.rgba[i], png.astype(np.float32) / 255.0)
            np.testing.assert_allclose(s.poses[i], np.array(frame["transform_matrix"]), atol=1e-6)
            np.testing.assert_array_equal(s.depth[i], np.load(root / frame["depth_path"][2:]))
            np.testing.assert_array_equal(s.normals[i], np.load(root / frame["normal_path"][2:]))


def test_images_paired_through_file_path_not_listing_order(tmp_path: Path) -> None:
    imgs = {name: rgba_u8(2, 2, (v, v, v, 255)) for name, v in (("a", 10), ("b", 20), ("c", 30))}
    poses = {name: np.eye(4) for name in imgs}
    for k, name in enumerate(imgs):
        poses[name][:3, 3] = k + 1
    order = ["c", "a", "b"]
    # "a" names its extension explicitly, the others rely on ".png" being appended
    frames = [{"file_path": f"./train/{n}" + (".png" if n == "a" else ""),
               "transform_matrix": poses[n].tolist()} for n in order]
    s = load_blender_split(make_dataset(tmp_path, imgs, frames), "train")
    np.testing.assert_allclose(s.rgba[:, 0, 0, 0] * 255, [30, 10, 20])
    np.testing.assert_allclose(s.poses[:, 0, 3], [3, 1, 2])
    assert s.depth is None and s.normals is None


def test_downscale_area_average_by_hand(tmp_path: Path) -> None:
    img = np.zeros((4, 6, 4), dtype=np.uint8)
    # top-left 2x2 block: two opaque pixels of different colour, one half-transparent, one empty
    img[0, 0] = (255, 0, 0, 255)
    img[0, 1] = (0, 255, 0, 255)
    img[1, 0] = (0, 0, 255, 51)
    img[1, 1] = (200, 200, 200, 0)  # transparent: its colour must not leak
    # top-middle block: fully transparent with junk colour
    img[0:2, 2:4] = (90, 80, 70, 0)
    # bottom-right block: uniform opaque
    img[2:4, 4:6] = (10, 20, 30, 255)
    s = load_blender_split(make_dataset(tmp_path, {"r_0": img}), "train", downscale=2)
    assert s.rgba.shape == (1, 2, 3, 4)
    a = np.array([1.0, 1.0, 0.2, 0.0])
    rgb = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [200 / 255] * 3])
    alpha = a.mean()
    expected = np.append((rgb * a[:, None]).sum(0) / a.sum(), alpha)  # premultiplied mean / mean alpha
    np.testing.assert_allclose(s.rgba[0, 0, 0], expected, atol=1e-6)
    np.testing.assert_allclose(s.rgba[0, 0, 1], [0, 0, 0, 0])
    np.testing.assert_allclose(s.rgba[0, 1, 2], [10 / 255, 20 / 255, 30 / 255, 1.0], atol=1e-6)
    # the same numbers from the array helper, and factor 1 is the identity
    full = load_blender_split(tmp_path, "train").rgba
    np.testing.assert_allclose(downscale_rgba(full, 2), s.rgba, atol=1e-6)
    assert downscale_rgba(full, 1) is full
    with pytest.raises(NerfpipeError, match="r_0.png"):  # 4 is not divisible by 3
        load_blender_split(tmp_path, "train", downscale=3)


def test_downscale_ground_truth(tmp_path: Path) -> None:
    root = tmp_path / "scene"
    generate_scene("diffuse", root, resolution=16, n_train=1, n_val=1, n_test=1, seed=0)
    full = load_blender_split(root, "train")
    half = load_blender_split(root, "train", downscale=2)
    assert half.rgba.shape == (1, 8, 8, 4) and half.depth.shape == (1, 8, 8)
    assert half.normals.shape == (1, 8, 8, 3)
    np.testing.assert_allclose(half.poses, full.poses)
    blocks = full.depth[0].reshape(8, 2, 8, 2)
    fg = blocks > 0
    with np.errstate(invalid="ignore"):
        expected = np.where(fg.any(axis=(1, 3)), (blocks * fg).sum(axis=(1, 3)) / fg.sum(axis=(1, 3)), 0)
    np.testing.assert_allclose(half.depth[0], expected, rtol=1e-6)
    norms = np.linalg.norm(half.normals[0], axis=-1)
    np.testing.assert_allclose(norms[half.depth[0] > 0], 1.0, atol=1e-5)
    assert np.all(norms[half.depth[0] == 0] == 0)


def test_pixel_formats(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    iio.imwrite(tmp_path / "train" / "grey.png", grey)
    rgb = np.arange(36, dtype=np.uint8).reshape(3, 4, 3) * 7
    iio.imwrite(tmp_path / "train" / "rgb.png", rgb)
    la = np.stack([grey, 255 - grey], axis=-1)
    iio.imwrite(tmp_path / "train" / "la.png", la)
    g16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000 + 7)
    write_png16(tmp_path / "train" / "g16.png", g16)
    rgba16 = (np.arange(48, dtype=np.uint32).reshape(3, 4, 4) * 1365).astype(np.uint16)
    write_png16(tmp_path / "train" / "rgba16.png", rgba16)
    names = ["grey", "rgb", "la", "g16", "rgba16"]
    frames = [{"file_path": f"./train/{n}", "transform_matrix": IDENTITY} for n in names]
    (tmp_path / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": frames}))
    s = load_blender_split(tmp_path, "train")
    g = grey / 255.0
    np.testing.assert_allclose(s.rgba[0], np.stack([g, g, g, np.ones_like(g)], -1), atol=1e-6)
    np.testing.assert_allclose(s.rgba[1], np.concatenate([rgb / 255.0, np.ones((3, 4, 1))], -1), atol=1e-6)
    np.testing.assert_allclose(s.rgba[2], np.stack([g, g, g, 1 - g], -1), atol=1e-6)
    g = g16 / 65535.0
    np.testing.assert_allclose(s.rgba[3], np.stack([g, g, g, np.ones_like(g)], -1), atol=1e-6)
    np.testing.assert_allclose(s.rgba[4], rgba16 / 65535.0, atol=1.0 / 255)  # decoded at 8 bits
    assert s.rgba.min() >= 0 and s.rgba.max() <= 1


# ----------------------------------------------------------------------------- errors


def good(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "scene", {"r_0": rgba_u8(4, 4, (1, 2, 3, 255)),
                                            "r_1": rgba_u8(4, 4, (4, 5, 6, 255))})


def edit_json(root: Path, fn) -> None:
    path = root / "transforms_train.json"
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_error_scene_folder_missing(tmp_path: Path) -> None:
    with pytest.raises(NerfpipeError, match="no_such_scene"):
        load_blender_split(tmp_path / "no_such_scene", "train")


def test_error_transforms_missing_or_not_json(tmp_path: Path) -> None:
    root = good(tmp_path)
    with pytest.raises(NerfpipeError, match="transforms_val.json"):
        load_blender_split(root, "val")
    (root / "transforms_train.json").write_text("{not json")
    with pytest.raises(NerfpipeError, match="transforms_train.json"):
        load_blender_split(root, "train")
    (root / "transforms_train.json").write_text("[1, 2]")
    with pytest.raises(NerfpipeError, match="transforms_train.json"):
        load_blender_split(root, "train")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("frames"), "frames"),
    (lambda d: d.pop("camera_angle_x"), "camera_angle_x"),
    (lambda d: d.update(camera_angle_x="wide"), "camera_angle_x"),
    (lambda d: d.update(frames=[]), "empty"),
    (lambda d: d["frames"][1].pop("file_path"), "file_path"),
    (lambda d: d["frames"][0].pop("transform_matrix"), "transform_matrix"),
    (lambda d: d["frames"][1].update(transform_matrix=[[1, 0, 0], [0, 1, 0]]), "shape"),
    (lambda d: d["frames"][1]["transform_matrix"][0].__setitem__(3, float("nan")), "non-finite"),
    (lambda d: d["frames"][1]["transform_matrix"][0].__setitem__(0, 1.01), "not rigid"),
    (lambda d: d["frames"][1]["transform_matrix"][3].__setitem__(0, 0.5), "last row"),
    (lambda d: d["frames"][0].update(transform_matrix=np.diag([-1.0, 1, 1, 1]).tolist()), "reflection"),
])
def test_error_bad_transforms_content(tmp_path: Path, edit, message: str) -> None:
    root = good(tmp_path)
    edit_json(root, edit)
    with pytest.raises(NerfpipeError, match=message) as info:
        load_blender_split(root, "train")
    assert "transforms_train.json" in str(info.value)


def test_error_frame_without_image(tmp_path: Path) -> None:
    root = good(tmp_path)
    (root / "train" / "r_1.png").unlink()
    with pytest.raises(NerfpipeError, match=r"r_1\.png"):
        load_blender_split(root, "train")


def test_error_truncated_png(tmp_path: Path) -> None:
    root = good(tmp_path)
    noise = np.random.default_rng(0).integers(0, 255, (4, 4, 4), dtype=np.uint8)  # same size as r_0
    iio.imwrite(root / "train" / "r_1.png", noise)
    data = (root / "train" / "r_1.png").read_bytes()
    (root / "train" / "r_1.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(NerfpipeError, match=r"r_1\.png: cannot read image"):
        load_blender_split(root, "train")
    (root / "train" / "r_1.png").write_bytes(b"definitely not a png")
    with pytest.raises(NerfpipeError, match=r"r_1\.png"):
        load_blender_split(root, "train")


def test_error_wrong_size_within_split(tmp_path: Path) -> None:
    root = good(tmp_path)
    iio.imwrite(root / "train" / "r_1.png", rgba_u8(4, 5, (1, 1, 1, 255)))
    with pytest.raises(NerfpipeError, match=r"r_1\.png.*4x5") as info:
        load_blender_split(root, "train")
    assert "r_0.png" in str(info.value)


def test_error_ground_truth_shape(tmp_path: Path) -> None:
    root = good(tmp_path)
    np.save(root / "train" / "d.npy", np.zeros((3, 3), np.float32))
    np.save(root / "train" / "n.npy", np.zeros((4, 4, 3), np.float32))

    def add_gt(d: dict) -> None:
        for f in d["frames"]:
            f.update(depth_path="./train/d.npy", normal_path="./train/n.npy")

    edit_json(root, add_gt)
    with pytest.raises(NerfpipeError, match=r"d\.npy.*shape"):
        load_blender_split(root, "train")
