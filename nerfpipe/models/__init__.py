"""The methods nerfpipe reproduces, built from one set of shared blocks."""

from __future__ import annotations

from nerfpipe.models.base import RadianceModel, RayBundle
from nerfpipe.models.mipnerf import MipNeRF
from nerfpipe.models.nerf import NeRF
from nerfpipe.models.proposal import ProposalNeRF
from nerfpipe.models.refnerf import RefNeRF, RefNeRFPaper

METHODS: dict[str, type[RadianceModel]] = {
    "nerf": NeRF,
    "mipnerf": MipNeRF,
    "mipnerf360": ProposalNeRF,
    "refnerf": RefNeRF,
    "refnerf_paper": RefNeRFPaper,
}


def build_model(settings: dict) -> RadianceModel:
    """Instantiate the method named by settings["method"] with its resolved settings."""
    method = settings["method"]
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    return METHODS[method](settings)


__all__ = ["METHODS", "RadianceModel", "RayBundle", "build_model"]
