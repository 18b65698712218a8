"""The evaluation protocol's constants and size rule, shared by the config, data stage and evaluation.

Nothing is imported here, so the config loader (run at every snakemake start) reads them without
pulling in numpy, scipy or the data modules.
"""

# SSIM of the published tables (Wang et al. 2004): an 11x11 Gaussian window, sigma 1.5.
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # = int(3.5 * sigma + 0.5): the window skimage uses for gaussian_weights=True
SSIM_WINDOW = 2 * SSIM_RADIUS + 1

# mip-NeRF's multiscale protocol (sec. 5): every view at full, 1/2, 1/4 and 1/8 resolution.
MULTISCALE_FACTORS = (1, 2, 4, 8)
# The smallest side a multiscale image may have: its smallest scale must hold the SSIM window.
MULTISCALE_MIN_SIDE = SSIM_WINDOW * MULTISCALE_FACTORS[-1]


def fits_multiscale(height: int, width: int) -> bool:
    """Whether an image can take the multiscale protocol: the coarsest scale tiles it in whole blocks
    (a box filter) and still holds the SSIM window."""
    top = MULTISCALE_FACTORS[-1]
    return not (height % top or width % top) and min(height, width) >= MULTISCALE_MIN_SIDE
