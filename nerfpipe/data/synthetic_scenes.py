"""The embedded synthetic scenes: which primitives each is made of, where, and their textures.

Each scene is a union of analytic primitives (spheres, oriented boxes, capsules) inside a radius
of about 1.3 around the origin, on a transparent background:
- "diffuse": textured sphere, box and striped pillar (Lambertian materials).
- "glossy": reflective objects (materials with a Schlick reflectance f0 > 0 and a tint), lit by
  the procedural environment of `synthetic_shading`.
- "thin": a cube frame of thin capsules around a tilted ring with spokes (thin structures that
  occlude each other).
- "mirror": a near-mirror sphere (Schlick f0 = 1: a ray that hits it returns min(1, 0.95 env(r)),
  the environment in the reflected direction r = d - 2 (d.n) n) above a rougher gold capsule
  (f0 0.6 over dark stripes, a blurred reflection), in the tiled room environment of
  `synthetic_shading` (walls of coloured tiles, a window, ceiling lights, a checkered floor), so
  view-dependent reflections dominate the appearance (the case of Ref-NeRF's Shiny Blender
  scenes). Only the environment is reflected: the sphere does not show the capsule nor the
  capsule the sphere (inter-reflections are ignored), and nothing casts shadows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nerfpipe.data.synthetic_primitives import (
    AlbedoFn,
    Array,
    Box,
    Capsule,
    Material,
    Primitive,
    Sphere,
    unit,
)
from nerfpipe.errors import NerfpipeError

SCENES = ("diffuse", "glossy", "thin", "mirror")


def _rot(axis: str, deg: float) -> Array:
    """Rotation [3, 3] by `deg` degrees about the world axis "x", "y" or "z"."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


# ----------------------------------------------------------------------------- textures
# Each returns an AlbedoFn: (primitive, points [M, 3]) -> rgb [M, 3].


def _mix(mask: Array, c_true: tuple[float, ...], c_false: tuple[float, ...]) -> Array:
    return np.where(mask[:, None], np.asarray(c_true), np.asarray(c_false))


def _sphere_checker(centre: Array, radius: float, n_phi: int, n_theta: int,
                    c0: tuple[float, ...], c1: tuple[float, ...]) -> AlbedoFn:
    def albedo(prim: Any, p: Array) -> Array:
        q = (p - centre) / radius
        phi = np.arctan2(q[:, 1], q[:, 0])
        theta = np.arccos(np.clip(q[:, 2], -1.0, 1.0))
        cell = np.floor((phi + math.pi) / (2 * math.pi) * n_phi) + np.floor(theta / math.pi * n_theta)
        base = _mix(cell % 2 == 0, c0, c1)
        # fine meridian lines for extra high-frequency detail
        lines = np.abs(np.sin(phi * n_phi * 1.5)) < 0.12
        return np.where(lines[:, None], 0.15 * base + 0.05, base)

    return albedo


def _box_checker(cell: float) -> AlbedoFn:
    face_colours = np.array([[0.20, 0.35, 0.85], [0.25, 0.75, 0.35], [0.92, 0.90, 0.85]])

    def albedo(box: Any, p: Array) -> Array:
        q = box.local(p)
        axis = np.argmax(np.abs(q / box.half), axis=-1)
        # cells centred on the origin, so that no cell boundary lies on a face (no float ties)
        checker = np.sum(np.floor(q / cell + 0.5), axis=-1) % 2 == 0
        base = face_colours[axis]
        return np.where(checker[:, None], base, 0.3 * base + np.array([0.25, 0.05, 0.0]))

    return albedo


def _stripes(n_stripes: int, c0: tuple[float, ...], c1: tuple[float, ...]) -> AlbedoFn:
    def albedo(capsule: Any, p: Array) -> Array:
        s = capsule.axial(p)
        return _mix(np.floor(s * n_stripes) % 2 == 0, c0, c1)

    return albedo


def _constant(c: tuple[float, ...]) -> AlbedoFn:
    def albedo(prim: Any, p: Array) -> Array:
        return np.broadcast_to(np.asarray(c, dtype=np.float64), p.shape).copy()

    return albedo


# ----------------------------------------------------------------------------- scenes


@dataclass
class Scene:
    primitives: list[Primitive] = field(default_factory=list)
    glossy: bool = False  # shade with the materials' specular reflection (else Lambertian only)
    environment: str = "sky"  # what glossy materials reflect: a key of synthetic_shading.ENVIRONMENTS


def _diffuse_scene() -> Scene:
    sc, sr = np.array([0.30, 0.25, 0.15]), 0.55
    sphere = Sphere(sc, sr, Material(_sphere_checker(sc, sr, 12, 8, (0.85, 0.20, 0.15), (0.95, 0.85, 0.30))))
    box = Box(np.array([-0.35, -0.30, -0.20]), _rot("z", 30.0) @ _rot("x", 10.0),
              np.array([0.40, 0.35, 0.45]), Material(_box_checker(0.15)))
    pillar = Capsule(np.array([0.45, -0.55, -0.75]), np.array([0.45, -0.55, 0.65]), 0.12,
                     Material(_stripes(10, (0.55, 0.20, 0.70), (0.95, 0.95, 0.95))))
    return Scene([sphere, box, pillar])


def _glossy_scene() -> Scene:
    sc, sr = np.array([0.15, 0.10, 0.25]), 0.65

    def sphere_albedo(prim: Any, p: Array) -> Array:
        q = (p - sc) / sr
        bands = np.floor((q[:, 2] + 1.0) * 3.0) % 2 == 0
        return _mix(bands, (0.05, 0.10, 0.35), (0.10, 0.25, 0.45))

    sphere = Sphere(sc, sr, Material(sphere_albedo, f0=0.55, tint=(1.0, 1.0, 1.0)))
    pill = Capsule(np.array([-0.80, 0.50, -0.55]), np.array([0.60, -0.70, -0.55]), 0.22,
                   Material(_stripes(6, (0.60, 0.45, 0.10), (0.45, 0.30, 0.05)), f0=0.35,
                            tint=(1.0, 0.8, 0.45)))
    box = Box(np.array([-0.45, -0.35, 0.35]), _rot("z", 35.0) @ _rot("y", 20.0), np.array([0.25, 0.25, 0.25]),
              Material(_box_checker(0.125), f0=0.08, tint=(1.0, 1.0, 1.0)))
    return Scene([sphere, pill, box], glossy=True)


def _thin_scene() -> Scene:
    prims: list[Primitive] = []
    # cube frame: 12 edges of a rotated cube
    rot = _rot("z", 25.0) @ _rot("x", 15.0)
    half, r_edge = 0.70, 0.035
    corners = [np.array([sx, sy, sz]) * half for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]
    edge_colours = [(0.85, 0.25, 0.20), (0.25, 0.70, 0.30), (0.25, 0.40, 0.90)]
    for i, ci in enumerate(corners):
        for cj in corners[i + 1:]:
            diff = cj - ci
            if np.count_nonzero(diff) != 1:
                continue
            axis = int(np.flatnonzero(diff)[0])
            prims.append(Capsule(rot @ ci, rot @ cj, r_edge,
                                 Material(_stripes(8, edge_colours[axis], (0.9, 0.9, 0.85)))))
    # tilted ring (24 straight segments) with six spokes to a hub
    ring_axis = unit(np.array([0.3, -0.2, 1.0]))
    u = unit(np.cross(ring_axis, [1.0, 0.0, 0.0]))
    w = np.cross(ring_axis, u)
    r_ring, n_seg = 0.50, 24
    pts = [r_ring * (math.cos(2 * math.pi * j / n_seg) * u + math.sin(2 * math.pi * j / n_seg) * w)
           for j in range(n_seg)]
    for j in range(n_seg):
        colour = (0.95, 0.80, 0.15) if j % 2 == 0 else (0.90, 0.45, 0.10)
        prims.append(Capsule(pts[j], pts[(j + 1) % n_seg], 0.04, Material(_constant(colour))))
    for j in range(0, n_seg, 4):
        prims.append(Capsule(np.zeros(3), pts[j], 0.025,
                             Material(_stripes(4, (0.85, 0.85, 0.90), (0.35, 0.35, 0.40)))))
    prims.append(Sphere(np.zeros(3), 0.10, Material(_constant((0.80, 0.20, 0.60)))))
    return Scene(prims)


def _mirror_scene() -> Scene:
    sphere = Sphere(np.array([0.05, 0.05, 0.22]), 0.62,
                    Material(_constant((0.0, 0.0, 0.0)), f0=1.0, tint=(0.95, 0.95, 0.95)))
    capsule = Capsule(np.array([-0.70, 0.55, -0.62]), np.array([0.65, -0.60, -0.62]), 0.20,
                      Material(_stripes(5, (0.30, 0.18, 0.05), (0.18, 0.10, 0.03)), f0=0.6,
                               tint=(1.0, 0.78, 0.35), roughness=0.25))
    return Scene([sphere, capsule], glossy=True, environment="room")


_SCENE_BUILDERS = {"diffuse": _diffuse_scene, "glossy": _glossy_scene, "thin": _thin_scene,
                   "mirror": _mirror_scene}


def check_scene_kind(kind: str) -> None:
    """Refuse a scene name that is not one of SCENES."""
    if kind not in _SCENE_BUILDERS:
        raise NerfpipeError(f"synthetic scene {kind!r}: unknown, expected one of {', '.join(SCENES)}")


def build_scene(kind: str) -> Scene:
    """The primitives and materials of one of SCENES."""
    check_scene_kind(kind)
    return _SCENE_BUILDERS[kind]()
