"""Config schema, defaults, cross-checks and variant resolution (nerfpipe.config)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from nerfpipe.config import (
    METHOD_DEFAULTS,
    ablation_diff,
    load_config,
    resolve_scene,
    resolve_variant,
    validate_config,
)
from nerfpipe.errors import NerfpipeError
from nerfpipe.schema import SCHEMA_PATH, load_schema
from nerfpipe.settings import check_train_settings

REPO = Path(__file__).resolve().parent.parent
CONFIGS = ["config/config.yaml", "config/smoke.yaml", "config/blender.yaml", "config/shiny.yaml"]


def minimal() -> dict:
    return {
        "scenes": {"a": {"synthetic": "diffuse"}},
        "variants": {
            "nerf": {"method": "nerf"},
            "nerf_softl1": {"base": "nerf", "loss": "softl1"},
            "mipnerf": {"method": "mipnerf"},
            "mipnerf360": {"method": "mipnerf360"},
            "mipnerf360_nodist": {"base": "mipnerf360", "distortion_weight": 0.0},
            "refnerf": {"method": "refnerf"},
        },
    }


def with_change(path: str, value) -> dict:
    """minimal() with the dotted key `path` set to `value`."""
    cfg = minimal()
    *parents, last = path.split(".")
    node = cfg
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return cfg


def error_of(cfg: dict) -> str:
    with pytest.raises(NerfpipeError) as info:
        validate_config(cfg, source="test.yaml")
    message = str(info.value)
    assert message.startswith("test.yaml: "), message
    return message


# ------------------------------------------------------------------ shipped configs


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_are_valid(name):
    cfg = load_config(REPO / name)
    assert cfg["report"]["baseline"] in cfg["variants"]
    for variant in cfg["variants"]:
        settings = resolve_variant(cfg, variant)
        assert json.loads(json.dumps(settings)) == settings  # passed to the CLI as JSON


def test_default_config_has_the_documented_scenes_and_variants():
    cfg = load_config(REPO / "config/config.yaml")
    assert list(cfg["scenes"]) == ["diffuse", "glossy", "thin"]
    assert set(cfg["variants"]) == {
        "nerf", "mipnerf", "mipnerf360", "mipnerf360_nodist", "refnerf", "nerf_occ", "mipnerf_occ"
    }


# ------------------------------------------------------------------ schema structure


def test_every_settable_key_has_exactly_one_default():
    schema = load_schema()
    train_keys = set(schema["$defs"]["train_settings"]["properties"])
    default_keys = set(schema["properties"]["train_defaults"]["properties"])
    assert train_keys == default_keys
    assert all("default" in sub for sub in schema["properties"]["train_defaults"]["properties"].values())
    # The typed definitions carry no defaults: a variant's entry must stay sparse.
    assert not any("default" in sub for sub in schema["$defs"]["train_settings"]["properties"].values())
    scene_keys = set(schema["$defs"]["scene_settings"]["properties"])
    assert scene_keys == set(schema["properties"]["scene_defaults"]["properties"])


def test_method_defaults_name_real_methods_and_keys():
    schema = load_schema()
    methods = schema["$defs"]["variant"]["properties"]["method"]["enum"]
    assert sorted(METHOD_DEFAULTS) == sorted(methods)
    train_keys = set(schema["$defs"]["train_settings"]["properties"])
    for overrides in METHOD_DEFAULTS.values():
        assert set(overrides) <= train_keys


def test_every_list_of_methods_agrees():
    """A method is accepted everywhere methods are listed: schema enum, config.METHODS, build_model."""
    from nerfpipe import config as cfgmod
    from nerfpipe.models import METHODS as MODEL_CLASSES

    schema = load_schema()
    enum = schema["$defs"]["variant"]["properties"]["method"]["enum"]
    assert list(cfgmod.METHODS) == enum == list(MODEL_CLASSES) == list(METHOD_DEFAULTS)
    assert "refnerf_paper" in enum


# ------------------------------------------------------------------ defaults


def test_defaults_are_filled_in():
    cfg = validate_config(minimal())
    assert cfg["results"] == "results"
    assert cfg["seeds"] == [0]
    assert cfg["sampling_backend"] == "auto"
    assert cfg["report"] == {"baseline": "nerf"}
    assert cfg["render"]["frames"] == 40
    assert cfg["train_defaults"]["iterations"] == 1000
    assert cfg["train_defaults"]["lr"] == pytest.approx(1e-2)
    assert cfg["train_defaults"]["amp"] is True
    assert cfg["train_defaults"]["prop_samples"] == [32]
    assert cfg["train_defaults"]["sampling_backend"] is None
    assert cfg["scene_defaults"]["resolution"] == 64
    assert cfg["resources"]["train"] == {"threads": 2, "mem_mb": 4000, "runtime": 60}
    assert cfg["resources"]["gpu"] == 0
    # Variant entries are not padded with defaults (that would break inheritance).
    assert cfg["variants"]["nerf_softl1"] == {"base": "nerf", "loss": "softl1"}


def test_partial_sections_keep_their_values_and_get_the_rest():
    cfg = validate_config(with_change("resources.train", {"threads": 7}))
    assert cfg["resources"]["train"] == {"threads": 7, "mem_mb": 4000, "runtime": 60}
    cfg = validate_config(with_change("train_defaults.iterations", 3))
    assert cfg["train_defaults"]["iterations"] == 3
    assert cfg["train_defaults"]["batch_size"] == 256


def test_validation_neither_mutates_its_input_nor_shares_defaults():
    raw = minimal()
    before = copy.deepcopy(raw)
    first = validate_config(raw)
    assert raw == before
    first["train_defaults"]["prop_samples"].append(99)
    second = validate_config(raw)
    assert second["train_defaults"]["prop_samples"] == [32]
    assert validate_config(second) == second  # idempotent


def test_snakemake_validate_fills_the_same_defaults():
    from snakemake.utils import validate

    raw = minimal()
    validate(raw, str(SCHEMA_PATH), set_default=True)
    assert raw == validate_config(minimal())


# ------------------------------------------------------------------ rejections


@pytest.mark.parametrize(
    "path, value, expected",
    [
        ("seeds_list", [0], "unknown key 'seeds_list'"),
        ("train_defaults.iteratons", 1, "train_defaults: unknown key 'iteratons' (did you mean 'iterations'"),
        ("variants.nerf.lrr", 1e-3, "variants.nerf: unknown key 'lrr' (did you mean 'lr'?)"),
        ("scenes.a.resolutin", 8, "scenes.a: unknown key 'resolutin' (did you mean 'resolution'?)"),
        ("render.frame", 8, "render: unknown key 'frame' (did you mean 'frames'?)"),
        ("resources.train.thread", 2, "resources.train: unknown key 'thread'"),
    ],
)
def test_misspelt_keys_are_named(path, value, expected):
    assert expected in error_of(with_change(path, value))


@pytest.mark.parametrize(
    "path, value",
    [
        ("variants.nerf.loss", "l2"),
        ("train_defaults.loss", "huber"),
        ("sampling_backend", "cuda"),
        ("variants.nerf.sampling_backend", "gpu"),
        ("variants.nerf.method", "instant_ngp"),
        ("scenes.a.synthetic", "teapot"),
    ],
)
def test_bad_enum_values_are_rejected(path, value):
    message = error_of(with_change(path, value))
    assert f"{path}: {value!r} is not one of" in message


@pytest.mark.parametrize(
    "path, value",
    [
        ("train_defaults.iterations", 0),
        ("variants.nerf.iterations", -5),
        ("train_defaults.batch_size", 0),
        ("variants.nerf.lr", 0),
        ("variants.nerf.lr", -1),
        ("train_defaults.lr_final", 0.0),
        ("variants.mipnerf.precrop_frac", 0.0),
        ("variants.mipnerf.precrop_frac", 1.5),
        ("variants.refnerf.deg_view", 6),
        ("variants.mipnerf360.distortion_weight", -0.1),
        ("train_defaults.prop_samples", []),
        ("scene_defaults.resolution", 0),
        ("render.frames", 0),
        ("resources.gpu", -1),
    ],
)
def test_out_of_bounds_values_are_rejected(path, value):
    message = error_of(with_change(path, value))
    assert f"{path}: " in message


def test_error_message_names_key_path_and_bound():
    message = error_of(with_change("variants.nerf.lr", -1))
    assert "variants.nerf.lr: -1 is less than or equal to the minimum of 0" in message


def test_wrong_types_are_rejected():
    assert "variants.nerf.iterations: '100' is not of type 'integer'" in error_of(
        with_change("variants.nerf.iterations", "100")
    )
    assert "train_defaults.white_bkgd" in error_of(with_change("train_defaults.white_bkgd", "yes"))


def test_unknown_base_is_named_with_the_known_variants():
    message = error_of(with_change("variants.ablation", {"base": "nerff"}))
    assert "variants.ablation.base: unknown variant 'nerff'" in message
    assert "known variants: nerf, nerf_softl1" in message


def test_cyclic_bases_are_rejected():
    cfg = minimal()
    cfg["variants"]["a"] = {"base": "b"}
    cfg["variants"]["b"] = {"base": "a"}
    assert "cyclic base chain" in error_of(cfg)
    assert "cyclic base chain (self -> self)" in error_of(with_change("variants.self", {"base": "self"}))


@pytest.mark.parametrize(
    "results", ["/tmp/results", "../results", "out/../../x", ".", "", "a b", "res/{scene}"]
)
def test_unsafe_results_paths_are_rejected(results):
    assert "results: " in error_of(with_change("results", results))


@pytest.mark.parametrize("results", ["results", "results/blender", "out_2.v1"])
def test_safe_results_paths_are_accepted(results):
    assert validate_config(with_change("results", results))["results"] == results


def test_report_baseline_must_be_a_variant():
    message = error_of(with_change("report.baseline", "nerfacto"))
    assert "report.baseline: 'nerfacto' is not a configured variant" in message


def test_scene_needs_exactly_one_source():
    both = error_of(with_change("scenes.a", {"synthetic": "diffuse", "path": "data/x"}))
    assert "scenes.a: give exactly one of 'synthetic' or 'path' (both given)" in both
    neither = error_of(with_change("scenes.a", {"resolution": 8}))
    assert "(neither given)" in neither


def test_variant_needs_exactly_one_of_method_and_base():
    assert "variants.x: give exactly one of 'method' or 'base'" in error_of(
        with_change("variants.x", {"method": "nerf", "base": "nerf"})
    )
    assert "(neither given)" in error_of(with_change("variants.x", {"lr": 1e-3}))


def test_names_must_be_plain_identifiers():
    assert "scenes: name 'my-scene'" in error_of(with_change("scenes.my-scene", {"synthetic": "thin"}))
    assert "variants: name 'nerf/2'" in error_of(with_change("variants.nerf/2", {"method": "nerf"}))


def test_seeds_must_be_distinct_and_present():
    assert "seeds: " in error_of(with_change("seeds", [0, 0]))
    assert "seeds: " in error_of(with_change("seeds", []))


def test_near_must_be_below_far():
    assert "scenes.a: near (6.0) must be less than far (6.0)" in error_of(with_change("scenes.a.near", 6.0))


def test_required_sections():
    assert "'variants' is a required property" in error_of({"scenes": {"a": {"synthetic": "thin"}}})
    with pytest.raises(NerfpipeError, match="must be a mapping"):
        validate_config(["not", "a", "mapping"])


def test_load_config_names_the_file(tmp_path):
    with pytest.raises(NerfpipeError, match="missing.yaml: config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenes: {a: [\n")
    with pytest.raises(NerfpipeError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    cfg = with_change("variants.nerf.iteratoins", 5)
    typo.write_text(yaml.safe_dump(cfg))
    with pytest.raises(NerfpipeError, match=r"(?s)typo.yaml: .*variants.nerf: unknown key 'iteratoins'"):
        load_config(typo)
    # safe_load: YAML tags that construct Python objects are refused.
    evil = tmp_path / "evil.yaml"
    evil.write_text("results: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(NerfpipeError, match="evil.yaml: not valid YAML"):
        load_config(evil)


# ------------------------------------------------------------------ resolution


def test_resolved_variant_is_flat_and_complete():
    cfg = validate_config(minimal())
    settings = resolve_variant(cfg, "nerf", seed=3)
    assert set(settings) == set(cfg["train_defaults"]) | {"variant", "method", "seed"}
    assert settings["variant"] == "nerf" and settings["method"] == "nerf" and settings["seed"] == 3
    assert resolve_variant(cfg, "nerf")["seed"] == cfg["seeds"][0]


def test_method_defaults_apply_between_train_defaults_and_overrides():
    cfg = validate_config(with_change("train_defaults.pe_pos", 12))
    assert resolve_variant(cfg, "nerf")["pe_pos"] == 12
    assert resolve_variant(cfg, "mipnerf")["pe_pos"] == METHOD_DEFAULTS["mipnerf"]["pe_pos"] == 16
    assert resolve_variant(cfg, "refnerf")["srgb"] is True
    assert resolve_variant(cfg, "nerf")["srgb"] is False
    cfg = validate_config(with_change("variants.mipnerf.pe_pos", 8))
    assert resolve_variant(cfg, "mipnerf")["pe_pos"] == 8


def test_base_chain_inheritance_in_order():
    cfg = minimal()
    cfg["train_defaults"] = {"iterations": 100, "batch_size": 64}
    cfg["variants"] = {
        "root": {"method": "mipnerf", "lr": 1e-3, "iterations": 50},
        "mid": {"base": "root", "loss": "softl1", "lr": 5e-4},
        "leaf": {"base": "mid", "iterations": 7},
    }
    cfg["report"] = {"baseline": "root"}
    cfg = validate_config(cfg)
    leaf = resolve_variant(cfg, "leaf")
    expected = copy.deepcopy(cfg["train_defaults"])
    expected.update(METHOD_DEFAULTS["mipnerf"])
    for name in ("root", "mid", "leaf"):
        expected.update({k: v for k, v in cfg["variants"][name].items() if k not in ("method", "base")})
    expected["sampling_backend"] = cfg["sampling_backend"]
    expected.update(variant="leaf", method="mipnerf", seed=0)
    assert leaf == expected
    assert (leaf["lr"], leaf["loss"], leaf["iterations"], leaf["batch_size"]) == (5e-4, "softl1", 7, 64)
    assert resolve_variant(cfg, "root")["loss"] == "mse"


def test_sampling_backend_resolution():
    cfg = validate_config(with_change("sampling_backend", "torch"))
    assert resolve_variant(cfg, "nerf")["sampling_backend"] == "torch"
    cfg = validate_config(with_change("variants.nerf.sampling_backend", "ext"))
    assert resolve_variant(cfg, "nerf")["sampling_backend"] == "ext"
    assert resolve_variant(cfg, "nerf_softl1")["sampling_backend"] == "ext"  # inherited
    assert resolve_variant(cfg, "mipnerf")["sampling_backend"] == "auto"


def test_resolution_does_not_alias_the_config():
    cfg = validate_config(minimal())
    settings = resolve_variant(cfg, "mipnerf360")
    settings["prop_samples"].append(1)
    assert cfg["train_defaults"]["prop_samples"] == [32]


def test_unknown_variant_and_scene_list_the_known_ones():
    cfg = validate_config(minimal())
    with pytest.raises(NerfpipeError, match="variant 'nope' is not configured; known variants: nerf, nerf_"):
        resolve_variant(cfg, "nope")
    with pytest.raises(NerfpipeError, match="scene 'b' is not configured; known scenes: a"):
        resolve_scene(cfg, "b")


def test_resolve_scene_merges_defaults():
    cfg = validate_config(with_change("scenes.a.n_train", 5))
    scene = resolve_scene(cfg, "a")
    assert scene["n_train"] == 5 and scene["n_test"] == 20 and scene["synthetic"] == "diffuse"
    assert scene["scene"] == "a"


def test_ablation_diff():
    cfg = load_config(REPO / "config/config.yaml")
    assert ablation_diff(cfg, "mipnerf360_nodist") == {
        "distortion_weight": (cfg["train_defaults"]["distortion_weight"], 0.0)
    }
    smoke = load_config(REPO / "config/smoke.yaml")
    assert set(ablation_diff(smoke, "nerf_softl1")) == {"loss"}
    assert ablation_diff(cfg, "nerf") == {}
    with pytest.raises(NerfpipeError, match="not configured"):
        ablation_diff(cfg, "nope")


# ------------------------------------------------------------------ CLI-side settings check


def test_check_train_settings_accepts_resolved_variants_unchanged():
    cfg = load_config(REPO / "config/config.yaml")
    for name in cfg["variants"]:
        settings = resolve_variant(cfg, name, seed=2)
        settings["scene"] = "diffuse"
        assert check_train_settings(copy.deepcopy(settings)) == settings


def test_check_train_settings_fills_partial_settings_like_resolve_variant():
    filled = check_train_settings({"method": "mipnerf", "iterations": 9})
    cfg = validate_config(minimal())
    expected = resolve_variant(cfg, "mipnerf", seed=0)
    expected["iterations"] = 9
    assert filled == expected


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({"method": "nerf", "lr": -1.0}, "lr: -1.0 is less than or equal to the minimum of 0"),
        ({"method": "nerf", "batch_sise": 8}, "unknown key 'batch_sise' (did you mean 'batch_size'?)"),
        ({"method": "nerf", "loss": "l1"}, "loss: 'l1' is not one of"),
        ({"method": "nerf", "seed": -1}, "seed: -1 is less than the minimum of 0"),
        ({"method": "nerfacto"}, "method: 'nerfacto' is not one of"),
        ({}, "method: None is not one of"),
    ],
)
def test_check_train_settings_rejects_bad_settings(settings, expected):
    with pytest.raises(NerfpipeError) as info:
        check_train_settings(settings)
    assert str(info.value).startswith("--settings: ")
    assert expected in str(info.value)
