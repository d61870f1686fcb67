"""Fit of PSF-convolved Cartesian shapelets to a galaxy stamp (weighted linear solve per scale).

Shapelets up to order ``n_max`` (Refregier 2003, MNRAS 338, 35; ``(n_max + 1)(n_max + 2)/2``
coefficients, 231 for ``n_max = 20``) are fitted by weighted linear least squares at each scale
``beta`` of a logarithmic grid; the best scale is refined by a parabola in ``log beta`` through
the best three grid points.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vaelens.galaxy._stamp import (
    ParametricFitResult,
    float_dtype,
    light_moments,
    pixel_weights,
    reduced_chi2,
)
from vaelens.lensing import PixelGrid, convolve_psf, shapelet_design_matrix

__all__ = ["fit_shapelets"]


@functools.lru_cache(maxsize=8)
def _shapelet_solver(grid: PixelGrid, n_max: int, supersampling: int):
    x, y = grid.supersampled_coordinates(supersampling)

    def solve(image, w, psf, beta, cx, cy):
        xs, ys = x.astype(image.dtype), y.astype(image.dtype)
        basis = jnp.moveaxis(shapelet_design_matrix(xs, ys, n_max, beta, cx, cy), -1, 0)
        k = basis.shape[0]
        basis = convolve_psf(grid.downsample(basis, supersampling), psf)  # (K, ny, nx)
        a = basis.reshape(k, -1).T  # (N, K)
        sw = jnp.sqrt(w.reshape(-1))
        aw = a * sw[:, None]
        bw = image.reshape(-1) * sw
        ata = aw.T @ aw
        ridge = 1e-10 * jnp.trace(ata) / k
        coeffs = jnp.linalg.solve(ata + ridge * jnp.eye(k, dtype=ata.dtype), aw.T @ bw)
        model = (a @ coeffs).reshape(image.shape)
        return coeffs, model, jnp.sum(w * (image - model) ** 2)

    return jax.jit(solve), jax.jit(jax.vmap(solve, in_axes=(None, None, None, 0, None, None)))


def _parabola_vertex(log_beta: np.ndarray, chi2: np.ndarray) -> float | None:
    """Vertex of the parabola through three points, or None if it opens downwards."""
    lb, c = log_beta, chi2
    denom = (lb[0] - lb[1]) * (lb[0] - lb[2]) * (lb[1] - lb[2])
    a2 = (lb[2] * (c[1] - c[0]) + lb[1] * (c[0] - c[2]) + lb[0] * (c[2] - c[1])) / denom
    a1 = (
        lb[2] ** 2 * (c[0] - c[1]) + lb[1] ** 2 * (c[2] - c[0]) + lb[0] ** 2 * (c[1] - c[2])
    ) / denom
    if not a2 > 0:
        return None
    return float(np.clip(-a1 / (2 * a2), lb[0], lb[2]))


def fit_shapelets(
    image: np.ndarray,
    noise_variance: np.ndarray | float,
    *,
    pixel_scale: float,
    n_max: int = 20,
    psf: np.ndarray | None = None,
    betas: np.ndarray | None = None,
    supersampling: int = 1,
    mask: np.ndarray | None = None,
) -> ParametricFitResult:
    """Fit PSF-convolved shapelets up to order ``n_max`` by a weighted linear solve.

    The centre is fixed at the light's first moment; the scale ``beta`` is chosen on a
    logarithmic grid (default 1 to 10 pixels, 12 values) and refined by a parabola in
    ``log beta`` through the three best grid points.

    Parameters
    ----------
    image
        ``(ny, nx)`` stamp, flux per pixel.
    noise_variance
        Per-pixel noise variance, scalar or ``(ny, nx)``.
    pixel_scale
        Arcsec per pixel (for decoder stamps: ``vae.config.pixel_scale``).
    n_max
        Largest shapelet order.
    psf
        PSF kernel (unit sum) at the stamp's pixel scale; None for no convolution.
    betas
        Grid of scales, arcsec (at least three).
    supersampling
        Sub-pixels per pixel side for rendering the basis.
    mask
        Optional 0/1 pixel mask (1 = used).

    Returns
    -------
    ParametricFitResult
        ``n_params = (n_max + 1)(n_max + 2)/2 + 1`` (coefficients and beta; 232 for n_max = 20).
    """
    image = jnp.asarray(image, float_dtype())
    if image.ndim != 2:
        raise ValueError(f"expected one (ny, nx) stamp, got shape {tuple(image.shape)}")
    grid = PixelGrid(tuple(image.shape), float(pixel_scale))
    w = pixel_weights(image, noise_variance, mask)
    psf_arr = jnp.asarray(np.ones((1, 1)) if psf is None else psf, image.dtype)
    cx, cy, *_ = light_moments(image, grid)
    if betas is None:
        betas = grid.pixel_scale * np.geomspace(1.0, 10.0, 12)
    betas = np.asarray(betas, np.float64)
    if betas.ndim != 1 or len(betas) < 3 or not np.all(betas > 0):
        raise ValueError("betas must be at least three positive scales (arcsec)")
    solve, solve_grid = _shapelet_solver(grid, int(n_max), int(supersampling))
    _, _, chi2 = solve_grid(image, w, psf_arr, jnp.asarray(betas, image.dtype), cx, cy)
    chi2 = np.asarray(chi2)
    i = int(np.clip(np.nanargmin(chi2), 1, len(betas) - 2))
    candidates = [betas[int(np.nanargmin(chi2))]]
    vertex = _parabola_vertex(np.log(betas[i - 1 : i + 2]), chi2[i - 1 : i + 2])
    if vertex is not None:
        candidates.append(float(np.exp(vertex)))
    best = None
    for beta in candidates:
        coeffs, model, c2 = solve(image, w, psf_arr, beta, cx, cy)
        if best is None or float(c2) < best[3]:
            best = (beta, coeffs, model, float(c2))
    beta, coeffs, model, c2 = best
    k = (n_max + 1) * (n_max + 2) // 2
    n_pix = int(jnp.sum(w > 0))
    params = {"beta": float(beta), "coeffs": np.asarray(coeffs), "center_x": cx, "center_y": cy}
    return ParametricFitResult(params, np.asarray(model), c2, reduced_chi2(c2, n_pix, k + 1), k + 1)
