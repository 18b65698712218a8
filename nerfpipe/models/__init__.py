"""The methods nerfpipe reproduces, built from one set of shared blocks."""

from __future__ import annotations

from nerfpipe.models.base import RadianceModel, RayBundle
from nerfpipe.models.mipnerf import MipNeRF
from nerfpipe.models.nerf import NeRF
from nerfpipe.models.occgrid import MipNeRFOccGrid, NeRFOccGrid
from nerfpipe.models.proposal import ProposalNeRF
from nerfpipe.models.refnerf import RefNeRF, RefNeRFPaper

METHODS: dict[str, type[RadianceModel]] = {
    "nerf": NeRF,
    "mipnerf": MipNeRF,
    "mipnerf360": ProposalNeRF,
    "refnerf": RefNeRF,
    "refnerf_paper": RefNeRFPaper,
}

# The methods built on the occupancy-grid estimator (settings["estimator"] == "occgrid").
OCCGRID_METHODS: dict[str, type[RadianceModel]] = {"nerf": NeRFOccGrid, "mipnerf": MipNeRFOccGrid}


def build_model(settings: dict) -> RadianceModel:
    """Instantiate the method named by settings["method"] with its resolved settings (and its
    estimator: settings["estimator"], "stratified" when absent)."""
    method = settings["method"]
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    estimator = settings.get("estimator", "stratified")
    if estimator == "occgrid":
        if method not in OCCGRID_METHODS:
            built = ", ".join(OCCGRID_METHODS)
            raise ValueError(f"estimator occgrid is built for {built} only, not {method}")
        return OCCGRID_METHODS[method](settings)
    if estimator != "stratified":
        raise ValueError(f"unknown estimator {estimator!r}; known: stratified, occgrid")
    return METHODS[method](settings)


__all__ = ["METHODS", "OCCGRID_METHODS", "RadianceModel", "RayBundle", "build_model"]
