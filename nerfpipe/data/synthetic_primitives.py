"""Analytic primitives of the embedded synthetic scenes: spheres, oriented boxes and capsules, each
with its ray intersection, outward normal, bounding sphere and material.

Every `intersect(o, v)` takes one ray origin o [3] (a pinhole camera) and unit directions v [M, 3]
and returns the distance t [M] to the first hit in front of o (inf on a miss); every `normal(p)`
takes surface points p [M, 3] and returns outward normals [M, 3].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Array = np.ndarray
AlbedoFn = Callable[[Any, Array], Array]  # (primitive, points [M,3]) -> rgb [M,3]

# Intersections closer than this along the ray are ignored (none occur: cameras are outside).
T_MIN = 1e-6


def unit(v: Array) -> Array:
    """v [..., 3] scaled to unit length along the last axis."""
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@dataclass
class Material:
    albedo: AlbedoFn
    f0: float = 0.0  # Schlick reflectance at normal incidence (0 = purely diffuse)
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # colour of the specular reflection
    # Spread of the specular lobe (tangent of its half-angle; 0 = a perfect mirror): the reflection
    # is the mean of the environment over a fixed disc of directions around the mirror direction.
    roughness: float = 0.0


@dataclass
class Sphere:
    centre: Array
    radius: float
    material: Material

    def bound(self) -> tuple[Array, float]:
        return self.centre, self.radius

    def intersect(self, o: Array, v: Array) -> Array:
        oc = o - self.centre
        b = v @ oc
        disc = b * b - (oc @ oc - self.radius**2)
        root = np.sqrt(np.maximum(disc, 0.0))
        t = np.where(-b - root > T_MIN, -b - root, -b + root)
        return np.where((disc >= 0) & (t > T_MIN), t, np.inf)

    def normal(self, p: Array) -> Array:
        return (p - self.centre) / self.radius


@dataclass
class Box:
    centre: Array
    rotation: Array  # [3, 3], columns are the box axes in world space
    half: Array  # [3] half extents
    material: Material

    def bound(self) -> tuple[Array, float]:
        return self.centre, float(np.linalg.norm(self.half))

    def local(self, p: Array) -> Array:
        """Points p [M, 3] in the box's frame (centre at 0, axes along x, y, z) -> [M, 3]."""
        return (p - self.centre) @ self.rotation

    def intersect(self, o: Array, v: Array) -> Array:
        ol = (o - self.centre) @ self.rotation
        vl = v @ self.rotation
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / vl
            t1 = (-self.half - ol) * inv
            t2 = (self.half - ol) * inv
        t_near = np.nanmax(np.minimum(t1, t2), axis=-1)
        t_far = np.nanmin(np.maximum(t1, t2), axis=-1)
        hit = (t_far >= t_near) & (t_near > T_MIN)
        return np.where(hit, t_near, np.inf)

    def normal(self, p: Array) -> Array:
        q = self.local(p) / self.half  # the face hit has |q_axis| = 1
        axis = np.argmax(np.abs(q), axis=-1)
        n_local = np.zeros_like(q)
        rows = np.arange(len(q))
        n_local[rows, axis] = np.sign(q[rows, axis])
        return n_local @ self.rotation.T


@dataclass
class Capsule:
    a: Array
    b: Array
    radius: float
    material: Material

    def bound(self) -> tuple[Array, float]:
        return 0.5 * (self.a + self.b), 0.5 * float(np.linalg.norm(self.b - self.a)) + self.radius

    def axial(self, p: Array) -> Array:
        """Position of the closest axis point, 0 at `a` .. 1 at `b`. p: [M, 3] -> [M]."""
        ba = self.b - self.a
        return np.clip((p - self.a) @ ba / (ba @ ba), 0.0, 1.0)

    def intersect(self, o: Array, v: Array) -> Array:
        # Infinite cylinder around the axis, then the hemispherical end caps.
        ba = self.b - self.a
        oa = o - self.a
        baba, baoa, oaoa = ba @ ba, ba @ oa, oa @ oa
        bard = v @ ba
        rdoa = v @ oa
        qa = baba - bard * bard
        qb = baba * rdoa - baoa * bard
        qc = baba * oaoa - baoa * baoa - self.radius**2 * baba
        h = qb * qb - qa * qc
        with np.errstate(divide="ignore", invalid="ignore"):
            t_body = (-qb - np.sqrt(np.maximum(h, 0.0))) / qa
        y = baoa + t_body * bard
        body_ok = (h >= 0) & (qa > 0) & (y > 0) & (y < baba) & (t_body > T_MIN)
        # Cap sphere on the side the cylinder hit lies; oc = o - cap centre is one of two vectors.
        ob = o - self.b
        cap_is_a = y <= 0
        cb = np.where(cap_is_a, rdoa, v @ ob)
        cc = np.where(cap_is_a, oaoa, ob @ ob) - self.radius**2
        ch = cb * cb - cc
        t_cap = -cb - np.sqrt(np.maximum(ch, 0.0))
        cap_ok = (h >= 0) & (ch > 0) & (t_cap > T_MIN)
        return np.where(body_ok, t_body, np.where(cap_ok, t_cap, np.inf))

    def normal(self, p: Array) -> Array:
        s = self.axial(p)
        return (p - (self.a + s[:, None] * (self.b - self.a))) / self.radius


Primitive = Sphere | Box | Capsule
