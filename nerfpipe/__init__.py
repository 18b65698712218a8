"""nerfpipe: reproducible NeRF, mip-NeRF, mip-NeRF 360 and Ref-NeRF as one staged workflow."""

__version__ = "0.1.0"
