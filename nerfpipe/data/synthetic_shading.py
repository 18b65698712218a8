"""Shading of the embedded synthetic scenes: the colour of a surface point seen from a direction.

Diffuse materials get view-independent Lambertian shading under fixed directional lights (baked
in). In a glossy scene a material with Schlick reflectance f0 > 0 also reflects a procedural
environment (sky gradient, coloured bands, sun disc): colour = (1 - F) * diffuse + F * tint *
env(reflected direction), with Schlick's F, so colour depends on the view direction (the case
Ref-NeRF is built for).
"""

from __future__ import annotations

import math

import numpy as np

from nerfpipe.data.synthetic_primitives import Array, Primitive, unit
from nerfpipe.data.synthetic_scenes import Scene

_KEY_LIGHT = unit(np.array([0.5, 0.3, 0.8]))
_FILL_LIGHT = unit(np.array([-0.6, -0.4, 0.2]))
_SUN = unit(np.array([-0.4, 0.6, 0.55]))


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
    spec = np.asarray(mat.tint) * environment(reflected)
    return np.clip((1.0 - fresnel) * diffuse + fresnel * spec, 0.0, 1.0)
