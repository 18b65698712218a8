"""Shading of the embedded synthetic scenes: the colour of a surface point seen from a direction.

Diffuse materials get view-independent Lambertian shading under fixed directional lights (baked
in). In a glossy scene a material with Schlick reflectance f0 > 0 also reflects the scene's
procedural environment (ENVIRONMENTS[scene.environment]: "sky", a sky gradient with coloured bands
and a sun disc, or "room", a tiled room with a window and ceiling lights): colour = (1 - F) *
diffuse + F * tint * env(r), with Schlick's F and the reflected direction r = d - 2 (d.n) n
(Ref-NeRF eq. 4, d the view direction), so colour depends on the view direction (the case Ref-NeRF
is built for). A material with roughness > 0 reflects the mean of env over a fixed disc of
LOBE_SAMPLES directions around r (a blurred reflection). Only the environment is reflected: no
inter-reflections between objects and no shadows.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from nerfpipe.data.synthetic_primitives import Array, Primitive, unit
from nerfpipe.data.synthetic_scenes import Scene

_KEY_LIGHT = unit(np.array([0.5, 0.3, 0.8]))
_FILL_LIGHT = unit(np.array([-0.6, -0.4, 0.2]))
_SUN = unit(np.array([-0.4, 0.6, 0.55]))

EnvFn = Callable[[Array], Array]  # unit directions [M, 3] -> radiance [M, 3]


def lambert(albedo: Array, normals: Array) -> Array:
    """View-independent shading: ambient + key + fill directional lights. [M,3], [M,3] -> [M,3]."""
    key = np.clip(normals @ _KEY_LIGHT, 0.0, None)
    fill = np.clip(normals @ _FILL_LIGHT, 0.0, None)
    return albedo * (0.30 + 0.60 * key + 0.25 * fill)[:, None]


def environment(dirs: Array) -> Array:
    """Procedural environment radiance along unit directions [M, 3] -> [M, 3] (>= 0, the sun exceeds 1).

    Sky gradient above the horizon, alternating coloured bands just above it, a dark
    checkered ground below it, and a bright sun disc with a soft halo.
    """
    z = dirs[:, 2]
    phi = np.arctan2(dirs[:, 1], dirs[:, 0])
    zen = np.sqrt(np.clip(z, 0.0, 1.0))[:, None]
    sky = (1 - zen) * np.array([0.90, 0.85, 0.75]) + zen * np.array([0.20, 0.40, 0.85])
    band_on = (z > 0.05) & (z < 0.35)
    band_idx = np.floor((phi + math.pi) / (2 * math.pi) * 8).astype(np.int64) % 4
    band_colours = np.array([[0.95, 0.20, 0.15], [0.15, 0.85, 0.25], [0.95, 0.85, 0.10], [0.60, 0.15, 0.85]])
    sky = np.where(band_on[:, None], band_colours[band_idx], sky)
    ground_checker = (np.floor(phi * 4) + np.floor(np.clip(-z, 0, 1) * 6)) % 2 == 0
    ground = np.where(ground_checker[:, None], np.array([0.30, 0.22, 0.15]), np.array([0.12, 0.10, 0.08]))
    env = np.where((z >= 0)[:, None], sky, ground)
    cos_sun = dirs @ _SUN
    sun = 4.0 * np.exp((cos_sun - 1.0) / 0.002) + 0.6 * np.exp((cos_sun - 1.0) / 0.05)
    return env + sun[:, None] * np.array([1.0, 0.92, 0.75])


# ----------------------------------------------------------------------------- the room of the mirror scene
# A cube room around the scene: a direction is mapped to the point where it meets the cube
# [-1, 1]^3. Four walls of coloured tiles (5 across, 4 high, a different arrangement on each wall)
# with dark grout, a bright window with mullions on the +x wall, a checkered floor and a dark
# ceiling with a 3 x 3 grid of light panels, so the radiance changes strongly and often with the
# direction (a mirror shows a different part of the room from every viewpoint).
_ROOM_PALETTE = np.array([[0.90, 0.20, 0.15], [0.15, 0.50, 0.90], [0.95, 0.80, 0.10], [0.20, 0.75, 0.30],
                          [0.75, 0.25, 0.80], [0.95, 0.55, 0.15], [0.10, 0.70, 0.70], [0.92, 0.92, 0.88]])
_GROUT = np.array([0.06, 0.06, 0.07])
_WINDOW = np.array([2.6, 2.5, 2.2])  # brighter than 1: the highlight saturates after clipping
_LAMP = np.array([1.8, 1.7, 1.5])


def _frac_edge(u: Array, cells: float) -> Array:
    """Distance (in cells) from u * cells to the nearest integer: 0 on a cell boundary, 0.5 in the middle."""
    f = u * cells
    return np.abs(f - np.round(f))


def _walls(q: Array, on_x: Array) -> Array:
    """Radiance of the walls at cube points q [M, 3] (on_x [M]: the point lies on a wall x = +-1)."""
    x, z = q[:, 0], q[:, 2]
    h = np.where(on_x, q[:, 1], x)  # horizontal coordinate on the wall, in [-1, 1]
    face = np.where(on_x, np.where(x > 0, 0, 1), np.where(q[:, 1] > 0, 2, 3))  # +x, -x, +y, -y
    col = np.minimum(np.floor((h + 1.0) * 2.5), 4).astype(np.int64)
    row = np.minimum(np.floor((z + 1.0) * 2.0), 3).astype(np.int64)
    tile = _ROOM_PALETTE[(3 * face + 2 * col + 5 * row + col * row) % len(_ROOM_PALETTE)]
    tile *= (0.75 + 0.25 * z)[:, None]  # lit from above
    grout = (_frac_edge((h + 1.0) / 2.0, 5) < 0.06) | (_frac_edge((z + 1.0) / 2.0, 4) < 0.06)
    tile[grout] = _GROUT
    window = (face == 0) & (np.abs(h) < 0.45) & (z > -0.1) & (z < 0.6)
    mullion = (np.abs(h) < 0.03) | (np.abs(z - 0.25) < 0.03)
    tile[window] = _WINDOW
    tile[window & mullion] = _GROUT
    return tile


def _floor_ceiling(q: Array) -> Array:
    """Radiance of the floor (an 8 x 8 checker of two wood tones) and the ceiling (dark, 3 x 3 light
    panels) at cube points q [M, 3] on z = -1 or z = +1."""
    x, y = q[:, 0], q[:, 1]
    checker = (np.floor((x + 1.0) * 4) + np.floor((y + 1.0) * 4)) % 2 == 0
    out = np.where(checker[:, None], np.array([0.55, 0.36, 0.20]), np.array([0.18, 0.11, 0.07]))
    ceiling = q[:, 2] > 0
    out[ceiling] = np.array([0.22, 0.22, 0.25])
    lamp = ceiling & (_frac_edge((x + 1.0) / 2.0, 3) > 0.2) & (_frac_edge((y + 1.0) / 2.0, 3) > 0.2)
    out[lamp] = _LAMP
    return out


def room_environment(dirs: Array) -> Array:
    """Radiance of the tiled room along unit directions [M, 3] -> [M, 3] (>= 0, window and lamps exceed 1)."""
    a = np.abs(dirs)
    axis = np.argmax(a, axis=-1)
    q = dirs / a.max(axis=-1, keepdims=True)  # the point on the cube [-1, 1]^3
    wall = axis < 2
    out = np.empty_like(dirs)
    out[wall] = _walls(q[wall], axis[wall] == 0)
    out[~wall] = _floor_ceiling(q[~wall])
    return out


ENVIRONMENTS = {"sky": environment, "room": room_environment}

# Offsets of the specular lobe of a rough material: a Fibonacci spiral filling the unit disc.
LOBE_SAMPLES = 8
_LOBE_RADIUS = np.sqrt((np.arange(LOBE_SAMPLES) + 0.5) / LOBE_SAMPLES)
_LOBE_ANGLE = np.arange(LOBE_SAMPLES) * math.pi * (3.0 - math.sqrt(5.0))
LOBE_OFFSETS = np.stack([_LOBE_RADIUS * np.cos(_LOBE_ANGLE), _LOBE_RADIUS * np.sin(_LOBE_ANGLE)], axis=-1)


def blurred_environment(env: EnvFn, dirs: Array, spread: float) -> Array:
    """Mean of env over the disc of LOBE_SAMPLES directions unit(r + spread * (u t1 + v t2)) around each
    unit r of dirs [M, 3] (t1, t2 an orthonormal basis of the plane normal to r) -> [M, 3]."""
    helper = np.where((np.abs(dirs[:, 2]) < 0.9)[:, None],
                      np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0]))
    t1 = unit(np.cross(dirs, helper))
    t2 = np.cross(dirs, t1)
    total = np.zeros_like(dirs)
    for u, v in LOBE_OFFSETS:
        total += env(unit(dirs + spread * (u * t1 + v * t2)))
    return total / LOBE_SAMPLES


def shade(scene: Scene, prim: Primitive, points: Array, normals: Array, viewdirs: Array) -> Array:
    """Colour of surface points of one primitive seen along unit `viewdirs` (camera -> point). [M,3] each."""
    mat = prim.material
    albedo = mat.albedo(prim, points)
    diffuse = lambert(albedo, normals)
    if not scene.glossy or mat.f0 <= 0.0:
        return np.clip(diffuse, 0.0, 1.0)
    cos_o = np.clip(-np.sum(viewdirs * normals, axis=-1), 0.0, 1.0)
    fresnel = (mat.f0 + (1.0 - mat.f0) * (1.0 - cos_o) ** 5)[:, None]  # Schlick's approximation
    reflected = viewdirs - 2.0 * np.sum(viewdirs * normals, axis=-1, keepdims=True) * normals
    env = ENVIRONMENTS[scene.environment]
    radiance = env(reflected) if mat.roughness <= 0.0 else blurred_environment(env, reflected, mat.roughness)
    spec = np.asarray(mat.tint) * radiance
    return np.clip((1.0 - fresnel) * diffuse + fresnel * spec, 0.0, 1.0)
