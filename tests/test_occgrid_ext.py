"""The occupancy-grid kernels of nerfpipe._ext (ext/csrc/occgrid.cpp) held to their torch references:
marching bit for bit, packed volume rendering (values and gradients) to tight tolerances, the grid update
bit for bit (nerfacc's OccGridEstimator, Li et al. 2023)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nerfpipe import ext_backend
from nerfpipe.estimators import marching, packed
from nerfpipe.estimators.occgrid import OccupancyGrid
from nerfpipe.estimators.packed import PackedSamples, packed_info_from
from nerfpipe.render import DEPTH_ACC_EPS

BUILT, REASON = ext_backend.extension_status()
pytestmark = pytest.mark.skipif(not BUILT, reason=f"nerfpipe._ext is not built: {REASON}")

if BUILT:
    from nerfpipe import _ext

DTYPES = [torch.float32, torch.float64]
# Rendering sums run in double on the CPU (as torch's cumsum does) but in another order than torch's
# pairwise reductions, and exp is libm's, not torch's vectorised one: a few float32 ulps apart.
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-12)}


def _close_grad(ext: torch.Tensor, ref: torch.Tensor, ref64: torch.Tensor) -> None:
    """float64: within 1e-12 of the reference. float32: the depth term divides by acc, which magnifies
    float32 roundings, so the kernels' gradient must be at least about as accurate as the float32 reference,
    both measured against the reference in float64 on the same inputs (max norm)."""
    assert ext.dtype == ref.dtype and ext.shape == ref.shape
    if ext.dtype == torch.float64:
        torch.testing.assert_close(ext, ref, **TOL[torch.float64])
        return
    if ext.numel() == 0:
        return
    err_ext = (ext.double() - ref64).abs().max().item()
    err_ref = (ref.double() - ref64).abs().max().item()
    assert err_ext <= 2 * err_ref + 1e-6 * (1 + ref64.abs().max().item()), (err_ext, err_ref)
HYPO = settings(max_examples=20, deadline=None, derandomize=True)
keys = st.integers(min_value=0, max_value=2**64 - 1)
AABB = torch.tensor([-1.0, -0.5, -1.0, 1.0, 1.5, 0.5])


@pytest.fixture
def ext_forced():
    before = ext_backend._requested
    ext_backend.set_backend("ext")
    yield
    ext_backend.set_backend(before)


def _rays(n: int, dtype, seed: int, zero_frac: float = 0.2, miss_frac: float = 0.2):
    """n rays: origins around the box (some inside), directions with zero components, near/far."""
    g = torch.Generator().manual_seed(seed)
    o = torch.rand(n, 3, generator=g, dtype=torch.float64) * 5 - 2.5
    d = torch.randn(n, 3, generator=g, dtype=torch.float64) * (0.2 + 2 * torch.rand(n, 1, generator=g,
                                                                                     dtype=torch.float64))
    d[torch.rand(n, 3, generator=g) < zero_frac] = 0.0
    d[torch.rand(n, generator=g) < miss_frac] *= -1  # some point away from the box
    near = torch.rand(n, generator=g, dtype=torch.float64) * 0.5
    far = near + torch.rand(n, generator=g, dtype=torch.float64) * 8
    return o.to(dtype), d.to(dtype), near.to(dtype), far.to(dtype)


def _same_samples(a: PackedSamples, b: PackedSamples) -> None:
    for name in ("ray_indices", "t_starts", "t_ends", "packed_info"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert torch.equal(x, y), name


# ------------------------------------------------------------------------------------------------------
# Marching: bit for bit


@HYPO
@given(seed=st.integers(0, 10**6), rays=st.integers(0, 60), res=st.integers(1, 12),
       frac=st.sampled_from([0.0, 0.05, 0.4, 1.0]), randomized=st.booleans(), dtype=st.sampled_from(DTYPES),
       step=st.sampled_from([0.003, 0.02, 0.1, 0.7]), key=keys, zero_frac=st.sampled_from([0.0, 0.3, 1.0]))
def test_march_bit_identical_to_reference(seed, rays, res, frac, randomized, dtype, step, key, zero_frac):
    o, d, near, far = _rays(rays, dtype, seed, zero_frac)
    g = torch.Generator().manual_seed(seed + 1)
    occupied = torch.rand(res**3, generator=g) < frac
    ref = marching.march_rays_torch(o, d, near, far, occupied, AABB, res, step, randomized, key)
    ext = marching.march_rays_ext(o, d, near, far, occupied, AABB, res, step, randomized, key)
    _same_samples(ext, ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_march_special_rays(dtype):
    """Rays from inside the box, rays that miss it, axis-aligned and all-zero directions, near > far; an
    empty, a full and a uint8 grid."""
    o = torch.tensor([[0.0, 0.5, 0.0], [5.0, 5.0, 5.0], [-3.0, 0.1, 0.0], [0.2, 0.2, -0.2], [0.0, 0.0, 0.0],
                      [0.9, 1.4, 0.4], [-1.0, -0.5, -1.0]], dtype=dtype)
    d = torch.tensor([[1.0, 0.3, -0.2], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 2.0, 0.0],
                      [-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]], dtype=dtype)
    near = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.5, 0.0, 0.0], dtype=dtype)
    far = torch.tensor([6.0, 6.0, 6.0, 6.0, 0.2, 6.0, 6.0], dtype=dtype)
    res = 8
    grids = {"empty": torch.zeros(res**3, dtype=torch.bool), "full": torch.ones(res**3, dtype=torch.bool),
             "half": torch.arange(res**3) % 2 == 0}
    for name, occupied in grids.items():
        for randomized in (False, True):
            ref = marching.march_rays_torch(o, d, near, far, occupied, AABB, res, 0.05, randomized, 7)
            ext = marching.march_rays_ext(o, d, near, far, occupied, AABB, res, 0.05, randomized, 7)
            _same_samples(ext, ref)
            if name == "empty":
                assert len(ext) == 0 and ext.packed_info.shape == (7, 2)
            uint8 = marching.march_rays_ext(o, d, near, far, occupied.to(torch.uint8), AABB, res, 0.05,
                                            randomized, 7)
            _same_samples(uint8, ref)
    full = marching.march_rays_ext(o, d, near, far, grids["full"], AABB, res, 0.05, False)
    count = full.packed_info[:, 1]
    assert count[0] > 0 and count[1] == 0 and count[3] == 0 and count[4] == 0  # miss, zero d, near > far


@pytest.mark.parametrize(("dtype", "res", "scale", "steps"), [
    (torch.float32, 64, 1.0, 1024), (torch.float64, 64, 30.0, 256), (torch.float32, 128, 300.0, 4096)])
def test_march_skipping_empty_cells_keeps_the_output(dtype, res, scale, steps):
    """Sparse boxes of occupied cells in a fine grid, origins near and far, tiny steps: the kernel jumps
    over empty cells (ext/csrc/occgrid.h, march_ray) and must still give every sample of the reference."""
    g = torch.Generator().manual_seed(res + steps)
    rays = 500
    o = torch.randn(rays, 3, generator=g, dtype=torch.float64) * scale
    d = (torch.rand(rays, 3, generator=g, dtype=torch.float64) * 2 - 1 - o) * (0.1 + torch.rand(rays, 1,
                                                                                          generator=g))
    d[torch.rand(rays, 3, generator=g) < 0.15] = 0.0
    occupied = torch.zeros(res, res, res, dtype=torch.bool)
    for _ in range(6):
        c, w = torch.randint(0, res, (3,), generator=g), torch.randint(1, res // 4, (3,), generator=g)
        occupied[c[0]:c[0] + w[0], c[1]:c[1] + w[1], c[2]:c[2] + w[2]] = True
    occupied = occupied.reshape(-1) | (torch.rand(res**3, generator=g) < 0.002)
    near, far = torch.zeros(rays, dtype=torch.float64), torch.full((rays,), 1e4, dtype=torch.float64)
    args = (o.to(dtype), d.to(dtype), near.to(dtype), far.to(dtype), occupied, AABB, res, 3**0.5 * 2 / steps)
    for randomized in (False, True):
        ref = marching.march_rays_torch(*args, randomized, 5)
        assert len(ref) > 200
        _same_samples(marching.march_rays_ext(*args, randomized, 5), ref)


def test_march_public_function_dispatches(ext_forced):
    o, d, near, far = _rays(40, torch.float32, 3)
    occupied = torch.rand(8**3, generator=torch.Generator().manual_seed(0)) < 0.5
    out = marching.march_rays(o, d, near, far, occupied, AABB, 8, 0.02, True, 11)
    _same_samples(out, marching.march_rays_torch(o, d, near, far, occupied, AABB, 8, 0.02, True, 11))
    with pytest.raises(ValueError, match="needs an integer key"):
        marching.march_rays(o, d, near, far, occupied, AABB, 8, 0.02, True, None)
    with pytest.raises(ValueError, match="step_size must be > 0"):
        marching.march_rays(o, d, near, far, occupied, AABB, 8, 0.0, False)


# ------------------------------------------------------------------------------------------------------
# Packed volume rendering: values and gradients


def _packed(rays: int, max_len: int, dtype, seed: int):
    """Sorted, gapped samples: counts in [0, max_len] per ray (some rays empty)."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, max_len + 1, (rays,), generator=g)
    ray = torch.repeat_interleave(torch.arange(rays), counts)
    n = int(counts.sum())
    widths = torch.rand(n, generator=g, dtype=torch.float64) * 0.2 + 1e-3
    gaps = torch.rand(n, generator=g, dtype=torch.float64) * 0.1 * (torch.rand(n, generator=g) < 0.5)
    steps = widths + gaps
    first = (torch.cumsum(counts, 0) - counts)[ray]
    cum = torch.cumsum(steps, 0)
    start_of_ray = (cum - steps)[first] if n else cum
    starts = 2.0 + cum - steps - start_of_ray
    ends = starts + widths
    info = packed_info_from(ray, rays)
    directions = torch.randn(rays, 3, generator=g, dtype=torch.float64) + 0.1
    density = torch.rand(n, generator=g, dtype=torch.float64) * 8 * (torch.rand(n, generator=g) < 0.8)
    return (PackedSamples(ray, starts.to(dtype), ends.to(dtype), info), directions.to(dtype),
            density.to(dtype))


@HYPO
@given(seed=st.integers(0, 10**6), rays=st.integers(0, 30), max_len=st.integers(0, 40),
       dtype=st.sampled_from(DTYPES))
def test_packed_weights_values_and_gradients(seed, rays, max_len, dtype):
    samples, directions, density = _packed(rays, max_len, dtype, seed)
    g = torch.Generator().manual_seed(seed + 5)
    gw = torch.randn(len(samples), generator=g, dtype=torch.float64).to(dtype)
    gt = torch.randn(len(samples), generator=g, dtype=torch.float64).to(dtype)
    outs = []
    for fn, dt in ((packed.packed_weights_torch, dtype), (packed.packed_weights_ext, dtype),
                   (packed.packed_weights_torch, torch.float64)):
        cast = PackedSamples(samples.ray_indices, samples.t_starts.to(dt), samples.t_ends.to(dt),
                             samples.packed_info)
        sigma = density.to(dt).requires_grad_(True)
        w, t = fn(sigma, cast, directions.to(dt))
        loss = (w * gw.to(dt)).sum() + (t * gt.to(dt)).sum()
        (grad,) = torch.autograd.grad(loss, sigma) if len(samples) else (torch.zeros_like(sigma),)
        outs.append((w.detach(), t.detach(), grad))
    for ext, ref in zip(outs[1][:2], outs[0][:2], strict=True):
        assert ext.dtype == ref.dtype and ext.shape == ref.shape
        torch.testing.assert_close(ext, ref, **TOL[dtype])
    _close_grad(outs[1][2], outs[0][2], outs[2][2])


def test_the_kernels_are_differentiable_once():
    """The extension's backward is itself not differentiable (once_differentiable): a second derivative
    through it (create_graph) is refused loudly instead of coming out silently wrong. No model of nerfpipe
    takes one: the normals' create_graph differentiates the density field, not the rendering."""
    samples, directions, density = _packed(4, 6, torch.float64, 2)
    sigma = density.clone().requires_grad_(True)
    w, _ = packed.packed_weights_ext(sigma, samples, directions)
    (grad,) = torch.autograd.grad((w**2).sum(), sigma, create_graph=True)
    with pytest.raises(RuntimeError, match="marked with @once_differentiable"):
        grad.sum().backward()


def test_packed_weights_gradient_of_weights_alone_and_gradcheck():
    samples, directions, density = _packed(6, 9, torch.float64, 1)
    sigma = density.clone().requires_grad_(True)
    w, _ = packed.packed_weights_ext(sigma, samples, directions)
    w.sum().backward()  # the transmittance's gradient is None
    ref_sigma = density.clone().requires_grad_(True)
    packed.packed_weights_torch(ref_sigma, samples, directions)[0].sum().backward()
    torch.testing.assert_close(sigma.grad, ref_sigma.grad, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda s: packed.packed_weights_ext(s, samples, directions),
                                    (density.clone().requires_grad_(True),))


def _composite_inputs(rays: int, max_len: int, dtype, seed: int, bg_per_ray: bool):
    samples, directions, density = _packed(rays, max_len, dtype, seed)
    weights = packed.packed_weights_torch(density, samples, directions)[0]
    g = torch.Generator().manual_seed(seed + 9)
    rgb = torch.rand(len(samples), 3, generator=g, dtype=torch.float64).to(dtype)
    near = torch.full((rays,), 2.0, dtype=dtype)
    # Some far planes inside the samples (depth clipped to far), some rays with acc = 0 (depth = near).
    clipped = torch.rand(rays, generator=g) < 0.3
    far = torch.where(clipped, torch.full_like(near, 2.3), torch.full_like(near, 9))
    shape = (rays, 3) if bg_per_ray else (3,)
    background = torch.rand(shape, generator=g, dtype=torch.float64).to(dtype)
    return samples, weights, rgb, near, far, background


@HYPO
@given(seed=st.integers(0, 10**6), rays=st.integers(0, 30), max_len=st.integers(0, 30),
       dtype=st.sampled_from(DTYPES), bg_per_ray=st.booleans())
def test_packed_composite_values_and_gradients(seed, rays, max_len, dtype, bg_per_ray):
    samples, weights, rgb, near, far, background = _composite_inputs(rays, max_len, dtype, seed, bg_per_ray)
    g = torch.Generator().manual_seed(seed + 11)
    g_rgb = torch.randn(rays, 3, generator=g, dtype=torch.float64).to(dtype)
    g_acc = torch.randn(rays, generator=g, dtype=torch.float64).to(dtype)
    g_depth = torch.randn(rays, generator=g, dtype=torch.float64).to(dtype)
    outs = []
    for fn, dt in ((packed.packed_composite_torch, dtype), (packed.packed_composite_ext, dtype),
                   (packed.packed_composite_torch, torch.float64)):
        cast = PackedSamples(samples.ray_indices, samples.t_starts.to(dt), samples.t_ends.to(dt),
                             samples.packed_info)
        inputs = [t.to(dt).requires_grad_(True) for t in (weights, rgb, background)]
        out = fn(inputs[0], inputs[1], cast, near.to(dt), far.to(dt), inputs[2])
        cotangents = (("rgb", g_rgb), ("acc", g_acc), ("depth", g_depth))
        loss = sum((out[k] * gk.to(dt)).sum() for k, gk in cotangents)
        grads = torch.autograd.grad(loss, inputs, allow_unused=True) if rays else (None,) * 3
        grads = [torch.zeros_like(t) if gr is None else gr for t, gr in zip(inputs, grads, strict=True)]
        outs.append([out["rgb"].detach(), out["acc"].detach(), out["depth"].detach(), *grads])
    for ext, ref in zip(outs[1][:3], outs[0][:3], strict=True):
        assert ext.dtype == ref.dtype and ext.shape == ref.shape
        torch.testing.assert_close(ext, ref, **TOL[dtype])
    for ext, ref, ref64 in zip(outs[1][3:], outs[0][3:], outs[2][3:], strict=True):
        _close_grad(ext, ref, ref64)


def test_composite_depth_tie_with_near_splits_the_gradient_as_torch_does():
    """A ray whose raw depth equals `near` (acc = 0 and near = 0): torch.maximum halves the gradient."""
    samples = PackedSamples(torch.tensor([0, 0]), torch.tensor([0.5, 1.0], dtype=torch.float64),
                            torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([[0, 2]]))
    near, far = torch.zeros(1, dtype=torch.float64), torch.full((1,), 4.0, dtype=torch.float64)
    grads = []
    for fn in (packed.packed_composite_torch, packed.packed_composite_ext):
        w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        fn(w, torch.rand(2, 3, dtype=torch.float64), samples, near, far, torch.ones(3, dtype=torch.float64))[
            "depth"].sum().backward()
        grads.append(w.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-12, atol=0)


def test_public_rendering_functions_dispatch_and_fall_back(ext_forced):
    samples, weights, rgb, near, far, background = _composite_inputs(12, 10, torch.float32, 2, False)
    _, directions, density = _packed(12, 10, torch.float32, 2)
    w_pub, t_pub = packed.packed_weights(density, samples, directions)
    assert w_pub.grad_fn is None or "PackedWeights" in type(w_pub.grad_fn).__name__
    sigma = density.clone().requires_grad_(True)
    w_pub = packed.packed_weights(sigma, samples, directions)[0]
    assert "PackedWeights" in type(w_pub.grad_fn).__name__
    out = packed.packed_composite(weights.requires_grad_(True), rgb, samples, near, far, background)
    assert "PackedComposite" in type(out["rgb"].grad_fn).__name__
    # bfloat16 colours (autocast) are promoted exactly, as the reference's product promotes them.
    half = packed.packed_composite(weights, rgb.bfloat16(), samples, near, far, background)
    ref = packed.packed_composite_torch(weights, rgb.bfloat16(), samples, near, far, background)
    for key in ("rgb", "acc", "depth"):
        torch.testing.assert_close(half[key], ref[key], **TOL[torch.float32])
    # t's that need a gradient: the torch reference (the kernels treat them as constants).
    moving = PackedSamples(samples.ray_indices, samples.t_starts.clone().requires_grad_(True), samples.t_ends,
                           samples.packed_info)
    w_ref = packed.packed_weights(density, moving, directions)[0]
    assert "PackedWeights" not in type(w_ref.grad_fn).__name__


# ------------------------------------------------------------------------------------------------------
# Grid update: bit for bit


def _grid(res: int, seed: int) -> OccupancyGrid:
    grid = OccupancyGrid([-1, -1, -1, 1, 1, 1], res, threshold=0.05, ema_decay=0.9)
    g = torch.Generator().manual_seed(seed)
    grid.occ.copy_(torch.rand(res**3, generator=g) * 0.1 * (torch.rand(res**3, generator=g) < 0.5))
    grid.occupied.copy_(grid.occ > 0.02)
    return grid


@HYPO
@given(seed=st.integers(0, 10**6), res=st.integers(1, 10), k=st.integers(0, 2500),
       step=st.sampled_from([0.0, 0.01, 0.3]))
def test_grid_update_bit_identical_with_duplicates(seed, res, k, step):
    g = torch.Generator().manual_seed(seed + 3)
    cells = torch.randint(0, res**3, (k,), generator=g)  # k > G^3: duplicates for sure
    sigma = torch.rand(k, generator=g) * 5 * (torch.rand(k, generator=g) < 0.6)
    ref, ext = _grid(res, seed), _grid(res, seed)
    ref.apply_update_torch(cells, sigma, step)
    ext.apply_update_ext(cells, sigma, step)
    assert torch.equal(ext.occ, ref.occ) and torch.equal(ext.occupied, ref.occupied)


def test_grid_update_uses_old_values_for_every_duplicate_and_equal_grids():
    grid = _grid(2, 0)
    grid.occ.fill_(1.0)
    cells = torch.tensor([3, 3, 3, 5])
    grid.apply_update_ext(cells, torch.tensor([0.0, 2.0, 0.5, 0.0]), 1.0)
    assert grid.occ[3] == 2.0 and grid.occ[5] == pytest.approx(0.9) and grid.occ[0] == 1.0
    flat = _grid(3, 0)  # every value equal: occupied only where occ > mean, i.e. nowhere, in both
    ref = _grid(3, 0)
    for g in (flat, ref):
        g.occ.fill_(0.03)
    flat.apply_update_ext(torch.arange(27), torch.full((27,), 3.0), 0.01)
    ref.apply_update_torch(torch.arange(27), torch.full((27,), 3.0), 0.01)
    assert torch.equal(flat.occ, ref.occ) and torch.equal(flat.occupied, ref.occupied)


@pytest.mark.parametrize("nan", [float("nan"), -float("nan")])
def test_grid_update_propagates_a_nan_duplicate_as_the_reference_does(nan: float):
    """A NaN density (a diverged MLP; x86's default NaN has the sign bit set) wins the max over duplicate
    cells in both backends, as torch's scatter_reduce(amax) propagates it, and leaves every cell
    unoccupied (the mean is NaN)."""
    cells, sigma = torch.tensor([5, 5, 2]), torch.tensor([nan, 1.0, 0.5])
    ref, ext = _grid(3, 1), _grid(3, 1)
    ref.apply_update_torch(cells, sigma, 0.1)
    ext.apply_update_ext(cells, sigma, 0.1)
    assert torch.isnan(ref.occ[5]) and torch.isnan(ext.occ[5])
    assert torch.allclose(ext.occ, ref.occ, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(ext.occupied, ref.occupied) and not bool(ext.occupied.any())


def test_whole_update_equal_on_both_backends():
    def density(points: torch.Tensor) -> torch.Tensor:
        return torch.relu(0.6 - points.norm(dim=-1)) * 40

    grids = []
    for backend in ("torch", "ext"):
        before = ext_backend._requested
        try:
            ext_backend.set_backend(backend)
            grid = _grid(8, 4)
            grid.warmup_iterations = 2
            for it in range(4):
                grid.update(density, it, 1000 + it, 0.01)
            grids.append(grid)
        finally:
            ext_backend.set_backend(before)
    assert torch.equal(grids[0].occ, grids[1].occ) and torch.equal(grids[0].occupied, grids[1].occupied)


# ------------------------------------------------------------------------------------------------------
# Errors name the op and the argument


def test_bad_inputs_are_refused_with_the_op_name():
    o = torch.zeros(4, 3)
    near, far = torch.zeros(4), torch.ones(4)
    occ = torch.ones(8, dtype=torch.bool)
    aabb = AABB.clone()
    march = _ext.occ_march
    with pytest.raises(TypeError, match="occ_march: argument 'origins' must be float32 or float64"):
        march(o.long(), o, near, near, far, occ, aabb, 2, 0.1, False, 0, 0)
    with pytest.raises(TypeError, match="occ_march: argument 'directions' has dtype Double"):
        march(o, o.double(), near, near, far, occ, aabb, 2, 0.1, False, 0, 0)
    with pytest.raises(ValueError, match=r"occ_march: argument 'near' must have shape \[R\]"):
        march(o, o, near, near[:3], far, occ, aabb, 2, 0.1, False, 0, 0)
    with pytest.raises(ValueError, match=r"occ_march: argument 'occupied' must have shape \[G\^3\]"):
        march(o, o, near, near, far, occ, aabb, 3, 0.1, False, 0, 0)
    with pytest.raises(TypeError, match="occ_march: argument 'occupied' must be bool or uint8"):
        march(o, o, near, near, far, occ.float(), aabb, 2, 0.1, False, 0, 0)
    with pytest.raises(RuntimeError, match="occ_march: argument 'far' is on meta"):
        march(o, o, near, near, far.to("meta"), occ, aabb, 2, 0.1, False, 0, 0)
    with pytest.raises(ValueError, match="occ_march: argument 'step_size' must be > 0"):
        march(o, o, near, near, far, occ, aabb, 2, 0.0, False, 0, 0)
    t = torch.arange(4.0)
    info = torch.tensor([[0, 4]])
    norm = torch.ones(1)
    with pytest.raises(TypeError, match="packed_weights_forward: argument 'packed_info' must be int64"):
        _ext.packed_weights_forward(t, t, t + 1, info.int(), norm)
    with pytest.raises(ValueError, match=r"packed_weights_forward: argument 'density' must have shape \[S\]"):
        _ext.packed_weights_forward(t[:2], t, t + 1, info, norm)
    with pytest.raises(TypeError, match="packed_composite_forward: argument 'rgb' has dtype Double"):
        _ext.packed_composite_forward(t, torch.zeros(4, 3, dtype=torch.float64), t, t + 1, info, norm, norm,
                                      torch.zeros(1, 3), DEPTH_ACC_EPS)
    grid = torch.zeros(8)
    with pytest.raises(IndexError, match="occ_grid_update: argument 'cells' holds indices in"):
        _ext.occ_grid_update(grid, grid > 0, torch.tensor([0, 8]), torch.ones(2), 0.9, 0.1, 0.01)
    with pytest.raises(TypeError, match="occ_grid_update: argument 'sigma' has dtype Double"):
        _ext.occ_grid_update(grid, grid > 0, torch.tensor([0, 1]), torch.ones(2).double(), 0.9, 0.1, 0.01)
    with pytest.raises(TypeError, match="occ_grid_update: argument 'occupied' must be bool"):
        _ext.occ_grid_update(grid, grid, torch.tensor([0, 1]), torch.ones(2), 0.9, 0.1, 0.01)
