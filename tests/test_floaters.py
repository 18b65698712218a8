"""The floater metric (mip-NeRF 360 sec. 4) and the depth error: hand-built weight profiles with known
answers, the pixels and rays the evaluation measures them on, the fields a tiny trained model's
evaluation writes, and the report's columns (only when some run has them)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfpipe import diagnostics, metrics
from nerfpipe.data.splits import load_split
from nerfpipe.inference import load_trained, render_view
from nerfpipe.io import read_json, write_json
from nerfpipe.metrics import depth_error, floater_distance, floater_fraction
from nerfpipe.reporting import collect, manifest_from_results, tables
from nerfpipe.settings import check_train_settings
from nerfpipe.stages.evaluate import _depth_metrics, evaluate
from nerfpipe.stages.report import report
from nerfpipe.stages.train import train
from tests.test_report import build_tree, fixture_values

DEPTH_FIELDS = ("depth_mae", "floater_fraction", "floater_fraction_foreground", "floater_fraction_background",
                "floater_distance", "floater_rays")


# ---------------------------------------------------------------------------- the metric by hand


def endpoints(n: int = 8, near: float = 2.0, far: float = 6.0) -> np.ndarray:
    return np.linspace(near, far, n + 1)[None, :]  # [1, n+1], intervals of 0.5


def test_all_weight_at_the_surface_is_no_floater() -> None:
    t = endpoints()  # intervals [2, 2.5], ..., [5.5, 6]
    w = np.zeros((1, 8))
    w[0, 3] = 0.9  # [3.5, 4.0]
    f = floater_fraction(w, t, np.array([3.75]), distance=0.25)
    assert f["fraction"] == 0.0 and f["foreground"] == 0.0 and f["background"] == 0.0
    assert f["mean_weight"] == pytest.approx(0.9) and f["rays"] == 1 and f["background_rays"] == 0
    mid = 0.5 * (t[:, 1:] + t[:, :-1])
    assert floater_fraction(w, mid, np.array([3.75]), distance=0.0)["fraction"] == 0.0


def test_half_the_weight_far_away_is_half_floater() -> None:
    t = endpoints()
    w = np.zeros((1, 8))
    w[0, 3], w[0, 0] = 0.4, 0.4  # at the surface, and a cloud 1.5 in front of it
    f = floater_fraction(w, t, np.array([3.75]), distance=0.25)
    assert f["fraction"] == pytest.approx(0.5)
    assert f["foreground"] == pytest.approx(0.5) and f["background"] == 0.0
    # the same with midpoints
    mid = 0.5 * (t[:, 1:] + t[:, :-1])
    assert floater_fraction(w, mid, np.array([3.75]), 0.25)["fraction"] == pytest.approx(0.5)


def test_a_ray_without_surface_is_all_floater() -> None:
    t = np.repeat(endpoints(), 2, axis=0)
    w = np.zeros((2, 8))
    w[0, 3] = 0.6  # ray 0: at its surface
    w[1, 3] = 0.2  # ray 1: background (gt 0), weight where ray 0's surface is
    f = floater_fraction(w, t, np.array([3.75, 0.0]), distance=0.25)
    assert f["fraction"] == pytest.approx(0.25)  # 0.2 of 0.8
    assert f["background"] == pytest.approx(0.25) and f["foreground"] == 0.0
    assert f["foreground"] + f["background"] == pytest.approx(f["fraction"])
    assert f["background_rays"] == 1 and f["mean_weight"] == pytest.approx(0.4)
    only_background = floater_fraction(w[1:], t[1:], np.array([0.0]), distance=10.0)
    assert only_background["fraction"] == 1.0


def test_distance_boundary_with_points() -> None:
    """A weight exactly `distance` away is at the surface; any farther is a floater."""
    gt = np.array([4.0])
    assert floater_fraction(np.array([[1.0]]), np.array([[4.5]]), gt, 0.5)["fraction"] == 0.0
    assert floater_fraction(np.array([[1.0]]), np.array([[3.5]]), gt, 0.5)["fraction"] == 0.0
    assert floater_fraction(np.array([[1.0]]), np.array([[4.5 + 1e-9]]), gt, 0.5)["fraction"] == 1.0
    assert floater_fraction(np.array([[1.0]]), np.array([[3.5 - 1e-9]]), gt, 0.5)["fraction"] == 1.0


def test_distance_boundary_with_intervals() -> None:
    """An interval's weight is spread evenly over it: the share beyond the band is floater."""
    gt = np.array([4.0])
    w = np.array([[1.0]])
    assert floater_fraction(w, np.array([[4.5, 5.0]]), gt, 0.5)["fraction"] == 1.0  # starts on the boundary
    assert floater_fraction(w, np.array([[4.0, 4.5]]), gt, 0.5)["fraction"] == 0.0  # ends on the boundary
    assert floater_fraction(w, np.array([[4.25, 4.75]]), gt, 0.5)["fraction"] == pytest.approx(0.5)
    assert floater_fraction(w, np.array([[3.0, 5.0]]), gt, 0.5)["fraction"] == pytest.approx(0.5)  # 2 sides
    assert floater_fraction(w, np.array([[3.25, 4.0]]), gt, 0.5)["fraction"] == pytest.approx(1 / 3)
    # an empty interval is the point where it lies
    t = np.array([[4.5, 4.5, 5.0]])
    assert floater_fraction(np.array([[1.0, 0.0]]), t, gt, 0.5)["fraction"] == 0.0
    assert floater_fraction(np.array([[1.0, 0.0]]), t + 0.1, gt, 0.5)["fraction"] == 1.0


def test_no_weight_gives_nan_and_bad_input_is_refused() -> None:
    f = floater_fraction(np.zeros((2, 3)), np.tile(np.arange(4.0), (2, 1)), np.array([1.0, 0.0]), 0.1)
    assert math.isnan(f["fraction"]) and math.isnan(f["foreground"]) and f["mean_weight"] == 0.0
    with pytest.raises(ValueError, match="weights"):
        floater_fraction(np.zeros((2, 3)), np.zeros((2, 5)), np.zeros(2), 0.1)
    with pytest.raises(ValueError, match="weights"):
        floater_fraction(np.zeros((2, 3)), np.zeros((2, 4)), np.zeros(3), 0.1)
    with pytest.raises(ValueError, match="distance"):
        floater_fraction(np.zeros((2, 3)), np.zeros((2, 4)), np.zeros(2), -1.0)


def test_floater_distance_is_a_fraction_of_the_ray_range() -> None:
    assert metrics.FLOATER_DISTANCE_FRACTION == 0.05
    assert floater_distance(2.0, 6.0) == pytest.approx(0.2)  # Blender's near/far
    assert floater_distance(0.0, 40.0) == pytest.approx(2.0)


def test_depth_error_by_hand() -> None:
    gt = np.array([[2.0, 0.0], [3.0, 4.0]])  # one background pixel
    pred = np.array([[2.5, 9.0], [2.0, 4.0]])
    mae, n = depth_error(pred, gt)
    assert n == 3 and mae == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    mae, n = depth_error(pred, np.zeros_like(gt))
    assert n == 0 and math.isnan(mae)
    with pytest.raises(ValueError, match="shape"):
        depth_error(pred, gt[0])


# ---------------------------------------------------------------------------- pixels and rays


def test_floater_pixels_are_unmixed_spread_and_deterministic() -> None:
    alpha = np.zeros((8, 8))
    depth = np.zeros((8, 8))
    alpha[2:6, 2:6], depth[2:6, 2:6] = 1.0, 3.0  # an opaque square
    alpha[1, :] = 0.5  # a silhouette row: left out
    depth[7, 7] = 3.0  # a surface at the centre but a clear pixel (inconsistent): left out
    picks = diagnostics.floater_pixels(alpha, depth, 20)
    assert picks == diagnostics.floater_pixels(alpha, depth, 20) and len(picks) == 20
    assert len(set(picks)) == 20 and picks == sorted(picks)
    assert all(alpha[y, x] in (0.0, 1.0) and (alpha[y, x] == 1.0) == (depth[y, x] > 0) for y, x in picks)
    fg = sum(alpha[y, x] == 1.0 for y, x in picks)
    assert 3 <= fg <= 7  # about the square's share of the clean pixels (16 of 55)
    assert len(diagnostics.floater_pixels(alpha, depth, 1000)) == 55
    assert diagnostics.floater_pixels(np.full((4, 4), 0.5), np.zeros((4, 4)), 5) == []


# ---------------------------------------------------------------------------- evaluate


TINY = {"net_depth": 2, "net_width": 32, "net_depth_fine": 2, "net_width_fine": 32, "pe_pos": 4, "pe_dir": 2,
        "batch_size": 128, "iterations": 20, "log_every": 5, "ckpt_every": 10, "lr_warmup": 5,
        "scene": "tiny", "sampling_backend": "torch", "amp": False}
TINY_METHOD = {
    "nerf": {"n_samples": 8, "n_importance": 8},
    "mipnerf360": {"n_importance": 8, "prop_samples": [8], "prop_net_depth": 1, "prop_net_width": 16},
}


@pytest.fixture(scope="module", params=["nerf", "mipnerf360"])
def evaluated(request, tiny_scene, tmp_path_factory) -> dict:
    method = request.param
    root = tmp_path_factory.mktemp(f"floaters_{method}")
    s = check_train_settings({**TINY, **TINY_METHOD[method], "method": method})
    train(tiny_scene["data"], tiny_scene["rays"], root / "train", s, threads=1, device="cpu", progress=False)
    result = evaluate(tiny_scene["data"], root / "train", root / "eval", threads=1)
    return {"root": root, "data": tiny_scene["data"], "result": result}


def test_evaluate_writes_the_depth_fields(evaluated) -> None:
    written = read_json(evaluated["root"] / "eval" / "metrics.json")
    assert all(written[k] is not None for k in DEPTH_FIELDS)
    assert {k: written[k] for k in DEPTH_FIELDS} == {k: evaluated["result"][k] for k in DEPTH_FIELDS}
    data = load_split(evaluated["data"], "test")
    meta = data["meta"]
    assert written["floater_distance"] == pytest.approx(0.05 * (meta["far"] - meta["near"]))
    assert 0.0 <= written["floater_fraction"] <= 1.0
    assert written["floater_fraction_foreground"] + written["floater_fraction_background"] == pytest.approx(
        written["floater_fraction"])
    # Every unmixed pixel of the 2 16x16 test views (fewer than FLOATER_RAYS / 2 each).
    alpha, depth = data["rgba"][..., 3], data["depth"]
    clean = ((depth > 0) & (alpha > 0.99)) | ((depth <= 0) & (alpha < 0.01))
    assert written["floater_rays"] == int(clean.sum())
    # depth_mae: pooled over the foreground pixels of the renders, by hand
    model, settings = load_trained(evaluated["root"] / "train", "cpu")
    errors = []
    for pose, gt in zip(data["poses"], depth, strict=True):
        view = render_view(model, settings, meta, torch.from_numpy(pose), 4096)
        errors.append(np.abs(view["depth"] - gt)[gt > 0])
    assert written["depth_mae"] == pytest.approx(float(np.concatenate(errors).mean()), rel=1e-5)
    with open(evaluated["root"] / "eval" / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["depth_mae"]) for r in rows] == pytest.approx([float(e.mean()) for e in errors], rel=1e-5)


def test_floater_rays_are_the_last_level_of_the_model(evaluated) -> None:
    """The rays' weights are the rendering level's: their sums are the rendered opacity."""
    data = load_split(evaluated["data"], "test")
    model, settings = load_trained(evaluated["root"] / "train", "cpu")
    rays = diagnostics.floater_rays(model, settings, data["meta"], data["poses"][:1],
                                    data["rgba"][:1, ..., 3], data["depth"][:1], n_rays=10, chunk=3)
    assert rays["weights"].shape[0] == rays["t"].shape[0] == len(rays["gt_depth"]) == 10
    assert rays["t"].shape[1] == rays["weights"].shape[1] + 1
    pixels = diagnostics.floater_pixels(data["rgba"][0, ..., 3], data["depth"][0], 10)
    view = render_view(model, settings, data["meta"], torch.from_numpy(data["poses"][0]), 4096)
    acc = np.array([view["acc"][y, x] for y, x in pixels])
    assert rays["weights"].sum(axis=1) == pytest.approx(acc, abs=1e-5)
    assert list(rays["gt_depth"]) == [data["depth"][0][y, x] for y, x in pixels]


def test_no_ground_truth_depth_gives_nulls() -> None:
    out = _depth_metrics(None, {}, {"depth": None, "meta": {}}, [], 1)  # type: ignore[arg-type]
    assert out == dict.fromkeys(DEPTH_FIELDS)


# ---------------------------------------------------------------------------- the report


VARIANTS = ["mipnerf360", "mipnerf360_nodist"]
SCENES = ["lego", "shiny"]
FLOATERS = {"mipnerf360": 0.10, "mipnerf360_nodist": 0.30}


def values(scene: str, variant: str, seed: int) -> dict:
    return fixture_values(scene, "mipnerf" if variant == "mipnerf360" else "refnerf", seed)


def add_depth_metrics(results: Path, scenes_with_depth: list[str]) -> None:
    """Write the evaluation's depth fields into every run's metrics.json (null for other scenes)."""
    for path in sorted(results.glob("eval/*/*/seed*/metrics.json")):
        scene, variant, seed = path.parts[-4], path.parts[-3], int(path.parts[-2][4:])
        data = read_json(path)
        has = scene in scenes_with_depth
        fraction = FLOATERS[variant] + 0.01 * seed
        data.update({
            "depth_mae": 0.05 + 0.1 * (variant == "mipnerf360_nodist") + 0.001 * seed if has else None,
            "floater_fraction": fraction if has else None,
            "floater_fraction_foreground": fraction / 2 if has else None,
            "floater_fraction_background": fraction / 2 if has else None,
            "floater_distance": 0.2 if has else None,
            "floater_rays": 4100 if has else None,
        })
        write_json(path, data)


def build(root: Path, scenes_with_depth: list[str] | None) -> tuple[Path, Path]:
    results = build_tree(root, SCENES, VARIANTS, [0, 1], values, lambda v: "mipnerf360")
    if scenes_with_depth is not None:
        add_depth_metrics(results, scenes_with_depth)
    out = root / "report"
    report(results, out, SCENES, VARIANTS, [0, 1], "mipnerf360", {"mipnerf360_nodist": "mipnerf360"})
    return results, out


def header(path: Path) -> list[str]:
    with open(path, newline="") as f:
        return next(csv.reader(f))


@pytest.mark.parametrize("case", ["absent", "null", "present", "some scenes"])
def test_depth_columns_appear_only_when_some_run_has_them(tmp_path, case) -> None:
    with_depth = {"absent": None, "null": [], "present": SCENES, "some scenes": ["lego"]}[case]
    results, out = build(tmp_path, with_depth)
    runs = collect(manifest_from_results(results, SCENES, VARIANTS, [0, 1], "mipnerf360"))
    shown = case in ("present", "some scenes")
    keys = [c.key for c in tables.table_columns(runs)]
    assert ("floater_fraction" in keys) == ("depth_mae" in keys) == shown
    assert keys[: len(tables.COLUMNS)] == [c.key for c in tables.COLUMNS]
    for name in ("runs.csv", "report.csv"):
        assert ("floater_fraction" in header(out / name)) == shown, name
    assert ("d_floater_fraction" in header(out / "ablations.csv")) == shown
    with open(out / "paired.csv", newline="") as f:
        metrics_compared = {r["metric"] for r in csv.DictReader(f)}
    assert ("floater_fraction" in metrics_compared) == shown
    notes = tables.footnotes(runs)
    assert ("depth" in notes) == (case == "some scenes")
    if not shown:
        return
    agg = tables.aggregate(runs, SCENES, VARIANTS)
    lego = agg[(agg["scene"] == "lego")].set_index("variant")
    assert lego.loc["mipnerf360", "floater_fraction"] == pytest.approx(0.105)  # mean of seeds 0, 1
    assert lego.loc["mipnerf360_nodist", "floater_fraction"] == pytest.approx(0.305)
    assert bool(lego.loc["mipnerf360", "best_floater_fraction"])  # lower is better
    assert not bool(lego.loc["mipnerf360_nodist", "best_floater_fraction"])
    columns = tables.table_columns(agg)
    cells = dict(zip(columns, tables.table_cells(agg, False, columns)[0][1], strict=True))
    floaters = next(c for c in cells if c.key == "floater_fraction")
    assert cells[floaters] == ("0.105", True)
    with open(out / "ablations.csv", newline="") as f:
        ablation = {r["scene"]: r for r in csv.DictReader(f)}
    assert float(ablation["lego"]["d_floater_fraction"]) == pytest.approx(0.2)
    if case == "some scenes":
        assert math.isnan(agg[agg["scene"] == "shiny"]["floater_fraction"].iloc[0])
        assert tables.cell_note(floaters, "n/a", notes) == "depth"


def test_report_documents_show_the_columns_when_the_renderers_take_them(tmp_path) -> None:
    """report.md's table has the depth columns when present (once markdown.py asks tables.table_columns
    for its columns; skipped before)."""
    import inspect

    from nerfpipe.reporting import markdown

    if "table_columns" not in inspect.getsource(markdown):
        pytest.skip("reporting/markdown.py does not take tables.table_columns yet")
    _, out = build(tmp_path, SCENES)
    text = (out / "report.md").read_text()
    assert "Floaters ↓" in text and "Depth MAE ↓" in text
    assert "Floaters ↓" in (out / "report.html").read_text()


def test_golden_reports_have_no_depth_columns() -> None:
    golden = Path(__file__).parent / "data" / "report_golden"
    for name in ("demo", "ablation"):
        assert "floater" not in (golden / name / "report.csv").read_text()
        assert "Floaters" not in (golden / name / "report.md").read_text()


def test_level_names_follow_the_levels_of_each_method() -> None:
    from nerfpipe.diagnostics import level_names

    assert level_names("nerf", 2) == ["coarse", "fine"]
    assert level_names("nerf", 1) == ["nerf"]  # estimator occgrid: one network, one level
    assert level_names("mipnerf360", 3) == ["proposal 0", "proposal 1", "nerf"]
    assert level_names("refnerf_paper", 3) == ["coarse", "fine 0", "fine 1"]
