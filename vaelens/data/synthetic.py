"""Synthetic HST-like galaxy stamps (numpy, vectorised, seeded).

Galaxies are drawn as a sum of physically motivated components, all rendered in batches:

* an elliptical Sersic bulge and an elliptical Sersic (mostly exponential) disk with their own
  half-light radii, axis ratios and position angles;
* star-forming knots: point-like Gaussian clumps scattered along the disk (exponential radial
  distribution, along logarithmic spiral arms for spirals, or as a clustered random walk for
  irregulars), in the spirit of GalSim's ``RandomKnots`` (Plazas & Meyers, GalSim docs);
* optional two-armed logarithmic spiral modulation of the disk;
* merging / interacting systems: a second Sersic galaxy offset from the first.

Smooth components are evaluated on a 3x3 (``oversampling``) sub-pixel grid and block averaged
(pixel integration), knots are deposited bilinearly and broadened analytically in Fourier space,
and everything is convolved with an HST-like PSF (obscured Airy pattern, pixel integrated) by a
zero-padded FFT. Each stamp is normalised to unit total flux (pixel sum = 1). Light is centred on
the geometric stamp centre, pixel-index coordinate ``(size - 1) / 2`` on both axes, the same
convention as :class:`vaelens.lensing.PixelatedSource`; ``x`` grows with the column index and
``y`` with the row index.

Conventions follow lenstronomy: ``R = sqrt(q x'^2 + y'^2 / q)`` with ``x'`` along the major axis
at position angle ``phi`` (radians, from the +x axis), so ``hlr`` is the circularised half-light
radius, and ``e = (1 - q) / (1 + q) * (cos 2 phi, sin 2 phi)``.

References
----------
Sersic (1963); Ciotti & Bertin (1999), A&A 352, 447 (``b_n``); Leauthaud et al. (2007), ApJS
172, 219 (COSMOS sizes); Mandelbaum et al. (2012), MNRAS 420, 1518 (COSMOS training sample);
Born & Wolf, *Principles of Optics* (obscured Airy pattern).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy import fft as sp_fft
from scipy import optimize, special

__all__ = ["GALAXY_CLASSES", "hst_like_psf", "make_synthetic_galaxies"]

logger = logging.getLogger(__name__)

#: Morphological classes drawn by :func:`make_synthetic_galaxies` (code -> name).
GALAXY_CLASSES: dict[int, str] = {0: "disk", 1: "spheroid", 2: "irregular", 3: "merger"}
_CLASS_PROBS = np.array([0.45, 0.2, 0.2, 0.15])
_MAX_KNOTS = 40
_CHUNK = 64
_CORE_BOX = 16  # pixels around a profile centre integrated on a sub-pixel grid
_BLOCK = 256


def _sersic_b_n(n: np.ndarray) -> np.ndarray:
    """:func:`vaelens.lensing.light.sersic.sersic_b_n` (the package's one ``b_n``) as numpy."""
    from vaelens.lensing.light.sersic import sersic_b_n

    return np.asarray(sersic_b_n(np.asarray(n, dtype=np.float32)), dtype=np.float64)


def _airy(r_over_ld: np.ndarray, obscuration: float) -> np.ndarray:
    """Obscured Airy intensity at radius ``r`` in units of lambda/D, peak 1."""
    v = np.pi * np.maximum(r_over_ld, 1e-9)
    e = obscuration
    amp = 2.0 * special.j1(v) / v
    if e > 0:
        amp = amp - e**2 * 2.0 * special.j1(e * v) / (e * v)
    return (amp / (1.0 - e**2)) ** 2


def hst_like_psf(
    fwhm: float = 0.09,
    pixel_scale: float = 0.03,
    size: int = 41,
    obscuration: float = 0.33,
    oversampling: int = 5,
) -> np.ndarray:
    """HST-like PSF: a pixel-integrated, centrally obscured Airy pattern.

    The diffraction scale lambda/D is chosen such that the Airy core has the requested FWHM;
    the Airy rings provide the ``r^-3`` wings of a space-telescope PSF.

    Parameters
    ----------
    fwhm : float
        Full width at half maximum of the Airy core, arcsec (0.09 ~ ACS/WFC F814W with pixel
        response).
    pixel_scale : float
        Pixel size, arcsec.
    size : int
        Kernel width in pixels; odd sizes put the peak on the central pixel.
    obscuration : float
        Linear central obscuration ratio (0.33 for HST).
    oversampling : int
        Sub-pixels per pixel and axis used for the pixel integration.

    Returns
    -------
    numpy.ndarray
        ``(size, size)`` float64 kernel with unit sum, peak at index ``size // 2`` for odd sizes.
    """
    if fwhm <= 0 or pixel_scale <= 0 or size < 1:
        raise ValueError("hst_like_psf needs fwhm > 0, pixel_scale > 0 and size >= 1")
    # half maximum radius of the obscured Airy in units of lambda/D
    r_half = optimize.brentq(lambda r: _airy(np.array(r), obscuration) - 0.5, 1e-3, 0.7)
    lam_over_d = fwhm / (2.0 * r_half)
    sub = (np.arange(size * oversampling) + 0.5) / oversampling - size / 2.0
    x = sub * pixel_scale
    r = np.hypot(x[None, :], x[:, None])
    img = _airy(r / lam_over_d, obscuration)
    img = img.reshape(size, oversampling, size, oversampling).mean(axis=(1, 3))
    return img / img.sum()


def _seed_sequence(seed: Any) -> np.random.SeedSequence:
    """SeedSequence from an int, a SeedSequence, a numpy Generator or a JAX PRNG key."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return np.random.SeedSequence(int(seed))
    if isinstance(seed, np.random.Generator):
        return np.random.SeedSequence(int(seed.integers(2**63)))
    if type(seed).__module__.startswith("jax"):
        import jax

        data = seed
        if jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key):
            data = jax.random.key_data(seed)
        return np.random.SeedSequence(np.asarray(data, dtype=np.uint64).ravel().tolist())
    raise TypeError(f"seed must be an int, numpy Generator/SeedSequence or JAX key, got {seed!r}")


def _draw_parameters(rng: np.random.Generator, n: int, size: int, pixel_scale: float) -> dict:
    """Draw per-galaxy morphological parameters (all angles in rad, sizes in arcsec)."""
    half_width = 0.5 * size * pixel_scale
    cls = rng.choice(4, size=n, p=_CLASS_PROBS)
    # apparent F814W magnitude, Euclidean-like counts dN/dm ~ 10^(0.33 m) on [20, 25.2]
    a = 0.33 * np.log(10.0)
    u = rng.uniform(size=n)
    lo, hi = np.exp(a * 20.0), np.exp(a * 25.2)
    mag = np.log(lo + u * (hi - lo)) / a
    # circularised half-light radius: lognormal, brighter galaxies larger (COSMOS-like)
    hlr = np.exp(np.log(0.27) - 0.12 * (mag - 23.5) + 0.5 * rng.standard_normal(n))
    hlr = np.clip(hlr, 0.06, min(0.8, 0.45 * half_width * 1.0))
    hlr = np.where(cls == 1, hlr * 0.8, hlr)  # spheroids are more compact at fixed mag

    # disk: intrinsically thin oblate, random inclination -> apparent axis ratio
    cos_i = rng.uniform(size=n)
    q0 = rng.uniform(0.12, 0.3, size=n)
    q_disk = np.sqrt(cos_i**2 + q0**2 * (1.0 - cos_i**2))
    q_disk = np.where(cls == 2, rng.uniform(0.35, 1.0, size=n), q_disk)
    phi_disk = rng.uniform(0.0, np.pi, size=n)
    n_disk = np.where(cls == 2, rng.uniform(0.5, 1.0, size=n), rng.uniform(0.8, 1.2, size=n))
    hlr_disk = hlr.copy()

    # bulge: rounder, misaligned by a few tens of degrees
    n_bulge = np.where(cls == 1, rng.uniform(2.0, 4.0, size=n), rng.uniform(1.0, 4.0, size=n))
    q_bulge = np.where(cls == 1, rng.uniform(0.35, 1.0, size=n), rng.uniform(0.55, 1.0, size=n))
    phi_bulge = np.where(
        cls == 1,
        phi_disk,
        np.mod(phi_disk + 0.4 * rng.standard_normal(n), np.pi),
    )
    hlr_bulge = np.where(cls == 1, hlr, hlr * rng.uniform(0.15, 0.5, size=n))
    hlr_bulge = np.maximum(hlr_bulge, 0.03)
    bt = np.select(
        [cls == 0, cls == 1, cls == 2, cls == 3],
        [
            rng.beta(1.5, 3.5, size=n),
            np.ones(n),
            rng.beta(1.0, 8.0, size=n),
            rng.beta(2.0, 2.0, size=n),
        ],
    )

    # star-forming knots
    knot_frac = np.select(
        [cls == 0, cls == 1, cls == 2, cls == 3],
        [
            rng.uniform(0.0, 0.3, size=n),
            np.zeros(n),
            rng.uniform(0.3, 0.7, size=n),
            rng.uniform(0.0, 0.3, size=n),
        ],
    )
    n_knots = rng.integers(5, _MAX_KNOTS + 1, size=n)
    n_knots = np.where(knot_frac > 0, n_knots, 0)
    knot_sigma = rng.uniform(0.012, 0.045, size=n)

    # spiral arms for half of the disks
    spiral = (cls == 0) & (rng.uniform(size=n) < 0.5) & (q_disk > 0.3)
    arm_amp = np.where(spiral, rng.uniform(0.3, 0.8, size=n), 0.0)
    n_arms = np.where(spiral, rng.choice([2, 2, 2, 3, 4], size=n), 0)
    pitch = rng.uniform(np.deg2rad(12.0), np.deg2rad(30.0), size=n)
    arm_phase = rng.uniform(0.0, 2.0 * np.pi, size=n)

    # companion of mergers: flux fraction, separation, own profile
    comp = cls == 3
    comp_frac = np.where(comp, rng.uniform(0.15, 0.5, size=n), 0.0)
    sep = np.where(comp, hlr * rng.uniform(0.8, 2.5, size=n), 0.0)
    sep = np.minimum(sep, 0.55 * half_width)
    sep_angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
    comp_hlr = np.maximum(hlr * rng.uniform(0.35, 0.9, size=n), 0.04)
    comp_n = rng.uniform(0.7, 3.0, size=n)
    comp_q = rng.uniform(0.3, 1.0, size=n)
    comp_phi = rng.uniform(0.0, np.pi, size=n)

    return {
        "galaxy_class": cls,
        "mag": mag,
        "hlr": hlr,
        "bulge_fraction": bt,
        "n_bulge": n_bulge,
        "hlr_bulge": hlr_bulge,
        "q_bulge": q_bulge,
        "phi_bulge": phi_bulge,
        "n_disk": n_disk,
        "hlr_disk": hlr_disk,
        "q_disk": q_disk,
        "phi_disk": phi_disk,
        "knot_fraction": knot_frac,
        "n_knots": n_knots,
        "knot_sigma": knot_sigma,
        "arm_amplitude": arm_amp,
        "n_arms": n_arms,
        "arm_pitch": pitch,
        "arm_phase": arm_phase,
        "companion_fraction": comp_frac,
        "companion_dx": sep * np.cos(sep_angle),
        "companion_dy": sep * np.sin(sep_angle),
        "companion_hlr": comp_hlr,
        "companion_n": comp_n,
        "companion_q": comp_q,
        "companion_phi": comp_phi,
    }


def _draw_knots(rng: np.random.Generator, p: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Knot offsets (arcsec, relative to the disk centre, sky frame) and weights, (n, K)."""
    n = p["hlr"].size
    k = _MAX_KNOTS
    r_s = p["hlr_disk"][:, None] / 1.678  # exponential scale length
    # exponential disk: radius ~ Gamma(2) r_s, uniform azimuth (face-on frame)
    r = rng.gamma(2.0, 1.0, size=(n, k)) * r_s
    theta = rng.uniform(0.0, 2.0 * np.pi, size=(n, k))
    # spirals: knots concentrate on the arms
    spiral = p["n_arms"][:, None] > 0
    m = np.maximum(p["n_arms"][:, None], 1)
    arm_index = rng.integers(0, 4, size=(n, k)) % m
    theta_arm = (
        np.log(np.maximum(r, 1e-4) / p["hlr_disk"][:, None]) / np.tan(p["arm_pitch"][:, None])
        - p["arm_phase"][:, None] / m
        + 2.0 * np.pi * arm_index / m
        + 0.2 * rng.standard_normal((n, k))
    )
    on_arm = spiral & (rng.uniform(size=(n, k)) < 0.75)
    theta = np.where(on_arm, theta_arm, theta)
    xf, yf = r * np.cos(theta), r * np.sin(theta)
    # irregulars: clustered random walk instead
    walk = np.cumsum(rng.standard_normal((n, k, 2)), axis=1)
    walk -= walk.mean(axis=1, keepdims=True)
    walk *= (
        0.45 * p["hlr_disk"][:, None, None] / np.maximum(walk.std(axis=(1, 2), keepdims=True), 1e-9)
    )
    irr = (p["galaxy_class"] == 2)[:, None]
    xf = np.where(irr, walk[..., 0], xf)
    yf = np.where(irr, walk[..., 1], yf)
    # face-on -> sky: squash the minor axis, rotate by the disk angle
    sq = np.sqrt(p["q_disk"])[:, None]
    xr, yr = xf / sq, yf * sq
    c, s = np.cos(p["phi_disk"])[:, None], np.sin(p["phi_disk"])[:, None]
    dx, dy = xr * c - yr * s, xr * s + yr * c
    w = np.exp(0.5 * rng.standard_normal((n, k)))
    w = np.where(np.arange(k)[None, :] < p["n_knots"][:, None], w, 0.0)
    w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-30)
    # the knots' flux-weighted centroid sits on the disk centre (light stays centred)
    dx -= (w * dx).sum(axis=1, keepdims=True)
    dy -= (w * dy).sum(axis=1, keepdims=True)
    return dx, dy, w


def _sersic_batch(
    x: np.ndarray,
    y: np.ndarray,
    hlr: np.ndarray,
    n_s: np.ndarray,
    q: np.ndarray,
    phi: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    normalize: bool = True,
) -> np.ndarray:
    """Elliptical Sersic images sampled on a separable grid; float32 (B, Sy, Sx).

    ``x`` has shape (1, Sx) (shared) or (B, 1, Sx) (per galaxy), ``y`` (Sy, 1) or (B, Sy, 1),
    arcsec. ``R^2 = q x'^2 + y'^2 / q`` is expanded as a quadratic form in the (separable)
    offsets so that only two full-size operations precede the two exponentials. Peak-relative
    values ``exp(-b_n ((R/R_e)^(1/n) - 0))``; with ``normalize`` each image sums to 1.
    """
    f32 = np.float32
    c, s = np.cos(phi), np.sin(phi)
    re2 = hlr**2
    a = ((q * c**2 + s**2 / q) / re2).astype(f32)[:, None, None]
    d = ((q * s**2 + c**2 / q) / re2).astype(f32)[:, None, None]
    cross = (2.0 * c * s * (q - 1.0 / q) / re2).astype(f32)[:, None, None]
    x = x if x.ndim == 3 else x[None]
    y = y if y.ndim == 3 else y[None]
    dx = x - cx.astype(f32)[:, None, None]  # (B, 1, Sx)
    dy = y - cy.astype(f32)[:, None, None]  # (B, Sy, 1)
    img = (cross * dx) * dy
    img += a * dx * dx
    img += d * dy * dy + f32(1e-12)
    np.log(img, out=img)
    img *= (0.5 / n_s).astype(f32)[:, None, None]
    np.exp(img, out=img)
    img *= -_sersic_b_n(n_s).astype(f32)[:, None, None]
    np.exp(img, out=img)
    if normalize:
        img /= img.sum(axis=(1, 2), keepdims=True)
    return img


def _sersic_pixelated(
    hlr: np.ndarray,
    n_s: np.ndarray,
    q: np.ndarray,
    phi: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    size: int,
    pixel_scale: float,
    oversampling: int,
) -> np.ndarray:
    """Pixel-integrated, unit-sum Sersic stamps (B, size, size), float32.

    Pixels are sampled at their centres, except a ``_CORE_BOX``-pixel box around each profile
    centre (where cuspy profiles vary within a pixel), which is integrated on an
    ``oversampling x oversampling`` sub-pixel grid.
    """
    f32 = np.float32
    centre = (size - 1) / 2.0
    grid = ((np.arange(size) - centre) * pixel_scale).astype(f32)
    img = _sersic_batch(grid[None, :], grid[:, None], hlr, n_s, q, phi, cx, cy, normalize=False)
    if oversampling > 1:
        box = min(_CORE_BOX, size)
        col0 = np.clip(np.rint(cx / pixel_scale + centre).astype(int) - box // 2, 0, size - box)
        row0 = np.clip(np.rint(cy / pixel_scale + centre).astype(int) - box // 2, 0, size - box)
        sub = (np.arange(box * oversampling) + 0.5) / oversampling - 0.5
        xb = ((col0[:, None] + sub[None, :] - centre) * pixel_scale).astype(f32)[:, None, :]
        yb = ((row0[:, None] + sub[None, :] - centre) * pixel_scale).astype(f32)[:, :, None]
        core = _sersic_batch(xb, yb, hlr, n_s, q, phi, cx, cy, normalize=False)
        b = core.shape[0]
        core = core.reshape(b, box, oversampling, box, oversampling).mean(axis=(2, 4))
        rows = row0[:, None, None] + np.arange(box)[None, :, None]
        cols = col0[:, None, None] + np.arange(box)[None, None, :]
        img[np.arange(b)[:, None, None], rows, cols] = core
    img /= img.sum(axis=(1, 2), keepdims=True)
    return img


def _spiral_modulation(
    x: np.ndarray,
    y: np.ndarray,
    p: dict[str, np.ndarray],
    cx: np.ndarray,
    cy: np.ndarray,
) -> np.ndarray:
    """Logarithmic spiral-arm factor ``1 + A f(R) cos(m (theta - ln(R/R_e) / tan(pitch)) + psi)``.

    Evaluated in the disk's face-on frame; ``f(R) = 1 - exp(-4 R^2 / R_e^2)`` fades the arms
    towards the centre. Returns float32 (B, S, S), strictly positive for ``A < 1``.
    """
    f32 = np.float32
    c = np.cos(p["phi_disk"]).astype(f32)[:, None, None]
    s = np.sin(p["phi_disk"]).astype(f32)[:, None, None]
    sq = np.sqrt(p["q_disk"]).astype(f32)[:, None, None]
    dx = x[None] - cx.astype(f32)[:, None, None]
    dy = y[None] - cy.astype(f32)[:, None, None]
    xf = (dx * c + dy * s) * sq
    yf = (dy * c - dx * s) / sq
    re = p["hlr_disk"].astype(f32)[:, None, None]
    r2 = (xf * xf + yf * yf) / (re * re) + f32(1e-12)
    m = p["n_arms"].astype(f32)[:, None, None]
    arg = (
        m
        * (
            np.arctan2(yf, xf)
            - f32(0.5) * np.log(r2) / np.tan(p["arm_pitch"]).astype(f32)[:, None, None]
        )
        + p["arm_phase"].astype(f32)[:, None, None]
    )
    amp = p["arm_amplitude"].astype(f32)[:, None, None]
    return f32(1.0) + amp * (f32(1.0) - np.exp(-f32(4.0) * r2)) * np.cos(arg)


def make_synthetic_galaxies(
    seed: Any,
    n: int,
    size: int = 64,
    pixel_scale: float = 0.03,
    psf_fwhm: float | None = 0.09,
    noise_sigma: float | np.ndarray | None = None,
    *,
    oversampling: int = 5,
    max_offset: float = 0.0,
    dtype: Any = np.float32,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draw ``n`` HST-like galaxy stamps with unit total flux.

    Parameters
    ----------
    seed : int, numpy.random.Generator, numpy.random.SeedSequence or JAX PRNG key
        Source of all randomness; equal seeds give identical output.
    n : int
        Number of galaxies.
    size : int
        Stamp width in pixels (square stamps).
    pixel_scale : float
        Pixel size, arcsec (0.03 = COSMOS ACS drizzled pixels).
    psf_fwhm : float or None
        FWHM of the HST-like PSF, arcsec (see :func:`hst_like_psf`); ``None`` for no PSF.
    noise_sigma : float, array of shape (n,) or None
        Standard deviation of white Gaussian noise added to the unit-flux image (per pixel).
        ``None`` gives noiseless, non-negative stamps.
    oversampling : int
        Sub-pixels per pixel and axis for the smooth components.
    max_offset : float
        Maximum random offset of the light centre from the stamp centre, pixels (uniform per
        axis); 0 centres every galaxy exactly (by construction, before PSF/truncation).
    dtype : numpy dtype
        Output image dtype (float32 by default).

    Returns
    -------
    images : numpy.ndarray
        ``(n, size, size)`` stamps; noiseless stamps are >= 0 with pixel sum 1.
    params : dict of numpy.ndarray
        Per-galaxy parameters, each of shape ``(n,)``: ``galaxy_class`` (see
        :data:`GALAXY_CLASSES`), ``mag`` (nominal F814W magnitude, informational), ``hlr``
        (circularised half-light radius of the main disk/spheroid, arcsec), bulge/disk/companion
        Sersic parameters, knot and spiral-arm parameters, ``center_x``/``center_y`` (arcsec
        offsets of the light centre), ``e1``/``e2`` of the disk (lenstronomy convention) and
        ``noise_sigma`` (0 when noiseless).
    """
    if n < 0 or size < 4 or pixel_scale <= 0 or oversampling < 1:
        raise ValueError("need n >= 0, size >= 4, pixel_scale > 0 and oversampling >= 1")
    if noise_sigma is not None:
        sigma = np.broadcast_to(np.asarray(noise_sigma, dtype=np.float64), (n,))
        if np.any(~np.isfinite(sigma)) or np.any(sigma < 0):
            raise ValueError("noise_sigma must be finite and non-negative")
    else:
        sigma = np.zeros(n)
    seq = _seed_sequence(seed)
    psf_ft = None
    if psf_fwhm is not None:
        psf = hst_like_psf(psf_fwhm, pixel_scale, size=size - 1 + size % 2)
        psf_ft = _kernel_ft(psf, _pad_size(size))

    images = np.empty((n, size, size), dtype=dtype)
    blocks = []
    n_blocks = -(-n // _BLOCK)
    # galaxy i depends only on (seed, i): block b always draws _BLOCK galaxies from child b
    for b, child in enumerate(seq.spawn(n_blocks)):
        rng = np.random.default_rng(child)
        p = _draw_parameters(rng, _BLOCK, size, pixel_scale)
        knots = _draw_knots(rng, p)
        off = rng.uniform(-max_offset, max_offset, size=(2, _BLOCK)) * pixel_scale
        p["center_x"], p["center_y"] = off[0], off[1]
        m = min(_BLOCK, n - b * _BLOCK)
        p = {key: val[:m] for key, val in p.items()}
        knots = tuple(k[:m] for k in knots)
        sl = slice(b * _BLOCK, b * _BLOCK + m)
        for start in range(0, m, _CHUNK):
            csl = slice(start, min(start + _CHUNK, m))
            images[sl][csl] = _render(
                {key: val[csl] for key, val in p.items()},
                tuple(k[csl] for k in knots),
                size,
                pixel_scale,
                oversampling,
                psf_ft,
            )
        if noise_sigma is not None:  # drawn last: the noiseless part does not depend on it
            noise = rng.standard_normal((_BLOCK, size, size), dtype=np.float32)[:m]
            images[sl] += (sigma[sl, None, None] * noise).astype(dtype)
        blocks.append(p)

    params = {
        key: np.concatenate([blk[key] for blk in blocks]) if blocks else np.zeros(0)
        for key in (blocks[0] if blocks else {})
    }
    if params:
        qd = params["q_disk"]
        params["e1"] = (1 - qd) / (1 + qd) * np.cos(2 * params["phi_disk"])
        params["e2"] = (1 - qd) / (1 + qd) * np.sin(2 * params["phi_disk"])
    params["noise_sigma"] = np.array(sigma, dtype=np.float64)
    return images, params


def _pad_size(size: int) -> int:
    """FFT canvas width: room for the PSF half-width on one side, even length."""
    return size + 2 * (size // 4)


def _kernel_ft(kernel: np.ndarray, pad: int) -> np.ndarray:
    """rfft2 of an odd kernel embedded in a (pad, pad) canvas with its centre at the origin."""
    h = kernel.shape[0] // 2
    if h > pad - kernel.shape[0] // 2 - 1:
        raise ValueError("PSF kernel too large for the FFT canvas")
    canvas = np.zeros((pad, pad))
    canvas[: kernel.shape[0], : kernel.shape[1]] = kernel
    return np.fft.rfft2(np.roll(canvas, (-h, -h), axis=(0, 1))).astype(np.complex64)


def _render(
    p: dict[str, np.ndarray],
    knots: tuple[np.ndarray, np.ndarray, np.ndarray],
    size: int,
    pixel_scale: float,
    oversampling: int,
    psf_ft: np.ndarray | None,
) -> np.ndarray:
    """Render a chunk of galaxies (unit flux, PSF-convolved, noiseless), float32 (B, size, size)."""
    f32 = np.float32
    b = p["hlr"].size
    kdx, kdy, kw = knots
    # main system sits opposite the companion so that the flux-weighted centre is the centre
    f2 = p["companion_fraction"]
    main_cx = p["center_x"] - f2 * p["companion_dx"]
    main_cy = p["center_y"] - f2 * p["companion_dy"]
    w_main = 1.0 - f2
    w_knots = w_main * p["knot_fraction"]
    w_bulge = w_main * (1.0 - p["knot_fraction"]) * p["bulge_fraction"]
    w_disk = w_main * (1.0 - p["knot_fraction"]) * (1.0 - p["bulge_fraction"])

    centre = (size - 1) / 2.0
    native_x = ((np.arange(size) - centre) * pixel_scale).astype(f32)
    xn, yn = native_x[None, :], native_x[:, None]
    geometry = (size, pixel_scale, oversampling)

    smooth = w_bulge.astype(f32)[:, None, None] * _sersic_pixelated(
        p["hlr_bulge"], p["n_bulge"], p["q_bulge"], p["phi_bulge"], main_cx, main_cy, *geometry
    )
    disk = _sersic_pixelated(
        p["hlr_disk"], p["n_disk"], p["q_disk"], p["phi_disk"], main_cx, main_cy, *geometry
    )
    spiral = np.flatnonzero(p["n_arms"] > 0)
    if spiral.size:
        sub_p = {key: val[spiral] for key, val in p.items()}
        arm_disk = disk[spiral] * _spiral_modulation(
            xn, yn, sub_p, main_cx[spiral], main_cy[spiral]
        )
        disk[spiral] = arm_disk / arm_disk.sum(axis=(1, 2), keepdims=True)
    smooth += w_disk.astype(f32)[:, None, None] * disk
    merge = np.flatnonzero(f2 > 0)
    if merge.size:
        smooth[merge] += f2[merge].astype(f32)[:, None, None] * _sersic_pixelated(
            p["companion_hlr"][merge],
            p["companion_n"][merge],
            p["companion_q"][merge],
            p["companion_phi"][merge],
            main_cx[merge] + p["companion_dx"][merge],
            main_cy[merge] + p["companion_dy"][merge],
            *geometry,
        )
    native = smooth

    # knots: bilinear deposit on the native grid, Gaussian broadening in Fourier space
    col = (kdx + main_cx[:, None]) / pixel_scale + centre
    row = (kdy + main_cy[:, None]) / pixel_scale + centre
    c0, r0 = np.floor(col).astype(np.int64), np.floor(row).astype(np.int64)
    fc, fr = col - c0, row - r0
    deposit = np.zeros(b * size * size)
    gal = np.arange(b)[:, None]
    for dc, dr, wt in (
        (0, 0, (1 - fc) * (1 - fr)),
        (1, 0, fc * (1 - fr)),
        (0, 1, (1 - fc) * fr),
        (1, 1, fc * fr),
    ):
        cc, rr = c0 + dc, r0 + dr
        inside = (cc >= 0) & (cc < size) & (rr >= 0) & (rr < size)
        idx = (gal * size + np.clip(rr, 0, size - 1)) * size + np.clip(cc, 0, size - 1)
        deposit += np.bincount(idx.ravel(), (wt * kw * inside).ravel(), minlength=deposit.size)

    pad = _pad_size(size)
    ky = np.fft.fftfreq(pad)[:, None]
    kx = np.fft.rfftfreq(pad)[None, :]
    k2 = (kx**2 + ky**2).astype(f32)
    sig_px = (p["knot_sigma"] / pixel_scale).astype(f32)[:, None, None]
    gauss = np.exp(f32(-2.0 * np.pi**2) * sig_px**2 * k2[None])
    # zero-padded FFTs: linear (not circular) convolution of the stamp
    canvas = np.zeros((b, pad, pad), dtype=f32)
    canvas[:, :size, :size] = native
    total_ft = sp_fft.rfft2(canvas)
    canvas[:, :size, :size] = deposit.reshape(b, size, size)
    total_ft += (w_knots.astype(f32)[:, None, None] * gauss) * sp_fft.rfft2(canvas)
    if psf_ft is not None:
        total_ft *= psf_ft[None]
    img = sp_fft.irfft2(total_ft, s=(pad, pad))[:, :size, :size]
    img = np.maximum(img, 0.0)
    img /= img.sum(axis=(1, 2), keepdims=True)
    return img.astype(f32)
