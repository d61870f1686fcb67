"""Fast maximum-a-posteriori fits of galaxy stamps: VAE decoder, elliptical Sersic, shapelets.

Decoder fit
    The stamp is modelled as ``flux * S_(dx, dy)[decoder(z)]``, where ``decoder`` maps the 64
    latent parameters to a unit-flux 64x64 image (:meth:`vaelens.vae.VAE.decoder_function`) and
    ``S`` is a sub-pixel Fourier shift (exact band-limited translation, periodic). The objective is
    the negative log posterior with a standard-normal prior on ``z``,

    .. math::  \\tfrac12 \\chi^2 + \\tfrac12 \\lambda \\lVert z \\rVert^2, \\qquad
               \\chi^2 = \\sum_i w_i (d_i - f m_i)^2 / v_i,

    with the flux ``f`` profiled out analytically (weighted linear least squares) at every
    evaluation, so L-BFGS (Nocedal 1980) runs over ``(z, dx, dy)`` only. Started from the
    encoder mean, a fit takes a few tens of iterations. One stamp (:func:`fit_galaxy`) uses
    ``optax.lbfgs`` with a zoom line search inside ``jax.lax.while_loop``; a batch
    (:func:`fit_galaxies`) runs L-BFGS for all galaxies in lock step (a ``lax.scan`` of exactly
    ``max_iter`` batched objective-and-gradient evaluations, Armijo backtracking by rejected
    steps), so the decoder sees the whole batch as one large matmul per layer and no galaxy
    waits on another's line search. :func:`make_galaxy_fitter` returns both, jitted.

Comparison models
    :func:`fit_sersic`: PSF-convolved elliptical Sersic (7 parameters, amplitude profiled out),
    L-BFGS from several starts. :func:`fit_shapelets`: PSF-convolved Cartesian shapelets up to
    ``n_max`` (231 coefficients for ``n_max = 20``; Refregier 2003) by a weighted linear solve at
    each scale ``beta`` of a grid, refined by a parabola through the best three.

Reduced chi^2 is ``chi^2 / (N_pix - N_par)`` with the noise variance given, over unmasked pixels.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "GalaxyFitResult",
    "ParametricFitResult",
    "fit_galaxies",
    "fit_galaxy",
    "fit_sersic",
    "fit_shapelets",
    "fourier_shift",
    "make_galaxy_fitter",
]


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class GalaxyFitResult:
    """Result of a decoder fit (a pytree; batched fits carry a leading batch axis).

    Attributes
    ----------
    z
        Latent parameters at the optimum, ``(..., latent_dim)``.
    flux
        Total flux of the model (units of the image pixel sum).
    shift
        ``(..., 2)`` sub-pixel shift ``(dx, dy)`` of the decoded light in pixels; ``dx`` moves
        the light towards larger column index, ``dy`` towards larger row index.
    model
        Model image ``flux * shift(decoder(z))``, same shape as the data.
    chi2, reduced_chi2
        ``sum w (d - m)^2 / v`` over unmasked pixels and ``chi2 / (N_pix - N_par)`` with
        ``N_par = latent_dim + 3``.
    objective
        Final ``0.5 * chi2 + 0.5 * prior_weight * |z|^2``.
    n_iter
        L-BFGS iterations used (batched fits: objective evaluations until it stopped).
    converged
        Whether the gradient or progress tolerance was met before ``max_iter``.
    """

    z: jax.Array
    flux: jax.Array
    shift: jax.Array
    model: jax.Array
    chi2: jax.Array
    reduced_chi2: jax.Array
    objective: jax.Array
    n_iter: jax.Array
    converged: jax.Array


@dataclasses.dataclass(frozen=True)
class ParametricFitResult:
    """Result of a Sersic or shapelet fit of one stamp.

    Attributes
    ----------
    params
        Fitted parameters by name (Sersic: ``amp, R_sersic, n_sersic, e1, e2, center_x,
        center_y`` in lenstronomy conventions, arcsec; shapelets: ``beta`` (arcsec), ``coeffs``,
        ``center_x``, ``center_y``).
    model
        Model image.
    chi2, reduced_chi2
        As for :class:`GalaxyFitResult`.
    n_params
        Number of fitted parameters used in the reduced chi^2.
    """

    params: dict[str, np.ndarray | float]
    model: np.ndarray
    chi2: float
    reduced_chi2: float
    n_params: int


def fourier_shift(image: jax.Array, dx: jax.Array, dy: jax.Array) -> jax.Array:
    """Translate a ``(ny, nx)`` image by ``(dx, dy)`` pixels with the Fourier shift theorem.

    Exact for band-limited images, flux preserving, periodic (light leaving one edge re-enters
    at the other, negligible for centred galaxies and shifts of a few pixels). Differentiable in
    ``dx`` and ``dy``.
    """
    ny, nx = image.shape[-2:]
    ky = jnp.fft.fftfreq(ny)[:, None]
    kx = jnp.fft.rfftfreq(nx)[None, :]
    phase = jnp.exp(-2j * jnp.pi * (kx * dx + ky * dy))
    return jnp.fft.irfft2(jnp.fft.rfft2(image) * phase, s=(ny, nx))


def _weights(image, noise_variance, mask):
    w = 1.0 / jnp.broadcast_to(jnp.asarray(noise_variance, image.dtype), image.shape)
    if mask is not None:
        w = w * jnp.asarray(mask, image.dtype)
    return w


def _profiled_flux(data, model, w):
    return jnp.sum(w * data * model) / jnp.maximum(jnp.sum(w * model * model), 1e-30)


def _lbfgs_minimize(fun, x0, max_iter, gtol, ftol, memory_size=10):
    """Minimise ``fun`` from ``x0`` with optax L-BFGS inside a ``lax.while_loop``.

    Stops when ``max|grad| < gtol`` or the objective decreased by less than
    ``ftol * (|f| + 1)`` in three consecutive iterations, or after ``max_iter`` iterations.
    """
    opt = optax.lbfgs(
        memory_size=memory_size,
        linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=16),
    )
    value_and_grad = optax.value_and_grad_from_state(fun)

    def step(carry):
        x, state, it, f_prev, n_small, _ = carry
        value, grad = value_and_grad(x, state=state)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=fun)
        x = optax.apply_updates(x, updates)
        small = (f_prev - value) <= ftol * (jnp.abs(value) + 1.0)
        n_small = jnp.where(small, n_small + 1, 0)
        gmax = jnp.max(jnp.abs(grad))
        done = (gmax < gtol) | (n_small >= 3)
        return x, state, it + 1, value, n_small, done

    def cond(carry):
        _, _, it, _, _, done = carry
        return (it < max_iter) & ~done

    state = opt.init(x0)
    inf = jnp.asarray(jnp.inf, x0.dtype)
    carry = (x0, state, jnp.asarray(0), inf, jnp.asarray(0), jnp.asarray(False))
    x, state, it, _, _, done = jax.lax.while_loop(cond, step, carry)
    return x, it, done


def _two_loop(g, s_mem, y_mem, rho, gamma):
    """L-BFGS direction ``-H g`` of one problem from a memory ordered oldest to newest.

    Unused memory slots have ``rho = 0`` and contribute nothing.
    """
    m = s_mem.shape[0]

    def back(q, i):
        a = rho[i] * jnp.dot(s_mem[i], q)
        return q - a * y_mem[i], a

    q, alphas = jax.lax.scan(back, g, jnp.arange(m - 1, -1, -1))
    r = gamma * q

    def fwd(r, i):
        b = rho[i] * jnp.dot(y_mem[i], r)
        return r + s_mem[i] * (alphas[m - 1 - i] - b), None

    r, _ = jax.lax.scan(fwd, r, jnp.arange(m))
    return -r


def _lockstep_lbfgs(value_and_grad, x0, n_iter, gtol, ftol, memory_size=8):
    """Minimise a batch of independent problems with L-BFGS, all in lock step.

    ``value_and_grad(X) -> (f (B,), G (B, n))`` evaluates every problem once per iteration
    (batched), so a ``lax.scan`` of exactly ``n_iter`` evaluations replaces per-problem
    ``while_loop`` line searches (which diverge between problems under ``vmap``). Each
    iteration tries ``x + alpha d`` along the L-BFGS direction ``d``; the step is accepted if it
    satisfies the Armijo condition (then the memory is updated if ``s . y > 0`` and ``alpha``
    returns towards 1), otherwise ``x`` is kept and ``alpha`` shrinks (safeguarded quadratic
    interpolation). A problem stops changing once ``max|grad| < gtol`` or its objective
    decreased by less than ``ftol * (|f| + 1)`` over three accepted steps.

    Returns ``x, f, n_used, converged`` (``n_used``: evaluations until it stopped).
    """
    b, n = x0.shape
    dtype = x0.dtype
    f0, g0 = value_and_grad(x0)
    zeros_mem = jnp.zeros((b, memory_size, n), dtype)
    carry = dict(
        x=x0,
        f=f0,
        g=g0,
        s=zeros_mem,
        y=zeros_mem,
        rho=jnp.zeros((b, memory_size), dtype),
        gamma=jnp.ones(b, dtype),
        alpha=jnp.ones(b, dtype),
        n_small=jnp.zeros(b, jnp.int32),
        done=jnp.max(jnp.abs(g0), axis=-1) < gtol,
        n_used=jnp.zeros(b, jnp.int32),
        first=jnp.ones(b, bool),
    )

    def step(c, _):
        d = jax.vmap(_two_loop)(c["g"], c["s"], c["y"], c["rho"], c["gamma"])
        # first step (empty memory): steepest descent scaled to a unit-norm move
        gnorm = jnp.linalg.norm(c["g"], axis=-1, keepdims=True)
        d = jnp.where(c["first"][:, None], -c["g"] / jnp.maximum(gnorm, 1e-30), d)
        slope = jnp.sum(c["g"] * d, axis=-1)
        bad = ~(slope < 0)  # not a descent direction: restart from steepest descent
        d = jnp.where(bad[:, None], -c["g"] / jnp.maximum(gnorm, 1e-30), d)
        slope = jnp.where(bad, -gnorm[:, 0], slope)
        alpha = c["alpha"]
        x_t = c["x"] + alpha[:, None] * d
        f_t, g_t = value_and_grad(x_t)
        ok = jnp.isfinite(f_t) & (f_t <= c["f"] + 1e-4 * alpha * slope) & ~c["done"]
        s_new = x_t - c["x"]
        y_new = g_t - c["g"]
        sy = jnp.sum(s_new * y_new, axis=-1)
        upd = ok & (sy > 1e-10 * jnp.linalg.norm(s_new, axis=-1) * jnp.linalg.norm(y_new, axis=-1))
        keep_mem = ~bad[:, None, None]

        def roll(mem, new):
            mem = jnp.where(keep_mem, mem, 0.0)
            rolled = jnp.concatenate([mem[:, 1:], new[:, None]], axis=1)
            return jnp.where(upd[:, None, None], rolled, mem)

        s_mem = roll(c["s"], s_new)
        y_mem = roll(c["y"], y_new)
        rho_new = jnp.where(upd, 1.0 / jnp.where(upd, sy, 1.0), 0.0)
        rho = jnp.where(bad[:, None], 0.0, c["rho"])
        rho = jnp.where(upd[:, None], jnp.concatenate([rho[:, 1:], rho_new[:, None]], 1), rho)
        gamma = jnp.where(upd, sy / jnp.maximum(jnp.sum(y_new * y_new, axis=-1), 1e-30), c["gamma"])
        # rejected: minimiser of the quadratic through f, slope and f_t, within [0.1, 0.5] alpha
        denom = 2.0 * (f_t - c["f"] - alpha * slope)
        a_quad = -slope * alpha**2 / jnp.where(denom > 0, denom, 1.0)
        a_quad = jnp.where(jnp.isfinite(a_quad) & (denom > 0), a_quad, 0.1 * alpha)
        alpha_rej = jnp.clip(a_quad, 0.1 * alpha, 0.5 * alpha)
        alpha = jnp.where(ok, jnp.minimum(1.0, 2.0 * alpha), alpha_rej)
        alpha = jnp.where(ok & c["first"], 1.0, alpha)
        small = ok & ((c["f"] - f_t) <= ftol * (jnp.abs(f_t) + 1.0))
        n_small = jnp.where(small, c["n_small"] + 1, jnp.where(ok, 0, c["n_small"]))
        x = jnp.where(ok[:, None], x_t, c["x"])
        g = jnp.where(ok[:, None], g_t, c["g"])
        f = jnp.where(ok, f_t, c["f"])
        done = c["done"] | (ok & (jnp.max(jnp.abs(g), axis=-1) < gtol)) | (n_small >= 3)
        return dict(
            x=x,
            f=f,
            g=g,
            s=s_mem,
            y=y_mem,
            rho=rho,
            gamma=gamma,
            alpha=alpha,
            n_small=n_small,
            done=done,
            n_used=c["n_used"] + (~c["done"]).astype(jnp.int32),
            first=c["first"] & ~upd,
        ), None

    c, _ = jax.lax.scan(step, carry, None, length=n_iter)
    return c["x"], c["f"], c["n_used"], c["done"]


@functools.lru_cache(maxsize=16)
def make_galaxy_fitter(
    decoder: Callable[[jax.Array], jax.Array],
    *,
    max_iter: int = 60,
    gtol: float = 1e-3,
    ftol: float = 1e-6,
    prior_weight: float = 1.0,
    fit_shift: bool = True,
) -> tuple[Callable, Callable]:
    """Jitted decoder fitters for one stamp and for a batch (vmapped), cached per decoder.

    Parameters
    ----------
    decoder
        Pure function ``z (latent_dim,) -> (64, 64)`` unit-flux image, e.g.
        ``vae.decoder_function()``. Keep a reference and reuse it: compilation is cached on the
        function object.
    max_iter, gtol, ftol
        L-BFGS stopping rules (iterations; max |gradient| of the objective; relative decrease
        over three consecutive iterations).
    prior_weight
        ``lambda`` of the ``N(0, 1/lambda)`` prior on ``z`` (1: the VAE prior; 0: maximum
        likelihood).
    fit_shift
        Fit the sub-pixel shift ``(dx, dy)`` (otherwise fixed at 0).

    Returns
    -------
    fit_one, fit_batch
        ``fit_one(image, noise_variance, z_init, mask) -> GalaxyFitResult`` with image
        ``(64, 64)``, noise_variance scalar or ``(64, 64)``, z_init ``(latent_dim,)`` and mask
        ``(64, 64)`` of 0/1 (or all ones); ``fit_batch`` takes the same with a leading batch axis
        plus a static ``chunk_size`` (galaxies fitted together in lock step, ``max_iter``
        evaluations each; chunks run one after another).
    """

    n_shift = 2 if fit_shift else 0

    def model_shape(x, latent_dim):
        img = decoder(x[..., :latent_dim])
        if fit_shift:
            img = fourier_shift(
                img, x[..., latent_dim, None, None], x[..., latent_dim + 1, None, None]
            )
        return img

    def objective(x, image, w, latent_dim):
        m = model_shape(x, latent_dim)
        f = _profiled_flux(image, m, w)
        chi2 = jnp.sum(w * (image - f * m) ** 2)
        z = x[:latent_dim]
        return 0.5 * chi2 + 0.5 * prior_weight * jnp.sum(z * z)

    def result(x, image, w, latent_dim, n_iter, converged):
        m = model_shape(x, latent_dim)
        flux = _profiled_flux(image, m, w)
        model = flux * m
        chi2 = jnp.sum(w * (image - model) ** 2)
        n_pix = jnp.sum(w > 0)
        z = x[:latent_dim]
        return GalaxyFitResult(
            z=z,
            flux=flux,
            shift=x[latent_dim:] if fit_shift else jnp.zeros(2, x.dtype),
            model=model,
            chi2=chi2,
            reduced_chi2=chi2 / (n_pix - (latent_dim + 1 + n_shift)),
            objective=0.5 * chi2 + 0.5 * prior_weight * jnp.sum(z * z),
            n_iter=n_iter,
            converged=converged,
        )

    def fit_one(image, noise_variance, z_init, mask):
        image = jnp.asarray(image)
        dtype = image.dtype
        w = _weights(image, noise_variance, mask)
        latent_dim = z_init.shape[-1]
        x0 = jnp.concatenate([jnp.asarray(z_init, dtype), jnp.zeros(n_shift, dtype)])
        x, n_iter, converged = _lbfgs_minimize(
            lambda x: objective(x, image, w, latent_dim), x0, max_iter, gtol, ftol
        )
        return result(x, image, w, latent_dim, n_iter, converged)

    def fit_chunk(images, noise_variances, z_init, masks):
        dtype = images.dtype
        w = jax.vmap(_weights)(images, noise_variances, masks)
        latent_dim = z_init.shape[-1]
        x0 = jnp.concatenate(
            [z_init.astype(dtype), jnp.zeros((*z_init.shape[:-1], n_shift), dtype)], axis=-1
        )
        per_galaxy = jax.vmap(lambda x, d, ww: objective(x, d, ww, latent_dim))

        def value_and_grad(x):
            def total(x):
                f = per_galaxy(x, images, w)
                return jnp.sum(f), f

            (_, f), g = jax.value_and_grad(total, has_aux=True)(x)
            return f, g

        x, _, n_iter, converged = _lockstep_lbfgs(value_and_grad, x0, max_iter, gtol, ftol)
        return jax.vmap(lambda x, d, ww, n, c: result(x, d, ww, latent_dim, n, c))(
            x, images, w, n_iter, converged
        )

    def fit_batch(images, noise_variances, z_init, masks, chunk_size):
        # chunks of galaxies run one after another (lax.map), each as one lock-step batch
        n = images.shape[0]
        n_chunks = -(-n // chunk_size)
        pad = n_chunks * chunk_size - n

        def chunked(a):
            a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]) if pad else a
            return a.reshape(n_chunks, chunk_size, *a.shape[1:])

        out = jax.lax.map(
            lambda args: fit_chunk(*args),
            (chunked(images), chunked(noise_variances), chunked(z_init), chunked(masks)),
        )
        return jax.tree.map(lambda a: a.reshape(n_chunks * chunk_size, *a.shape[2:])[:n], out)

    return jax.jit(fit_one), jax.jit(fit_batch, static_argnames=("chunk_size",))


def _prepare(image, noise_variance, z_init, mask, latent_dim, batched):
    image = jnp.asarray(image)
    lead = image.shape[:-2]
    dtype = image.dtype if jnp.issubdtype(image.dtype, jnp.floating) else jnp.float32
    image = image.astype(dtype)
    var = jnp.asarray(noise_variance, dtype)
    if batched and var.ndim == 1:
        var = var[:, None, None]
    var = jnp.broadcast_to(var, image.shape)
    z0 = jnp.zeros((*lead, latent_dim), dtype) if z_init is None else jnp.asarray(z_init, dtype)
    mask = jnp.ones(image.shape, dtype) if mask is None else jnp.asarray(mask, dtype)
    return (
        image,
        var,
        jnp.broadcast_to(z0, (*lead, latent_dim)),
        jnp.broadcast_to(mask, image.shape),
    )


def fit_galaxy(
    decoder: Callable[[jax.Array], jax.Array],
    image: jax.Array,
    noise_variance: jax.Array | float,
    *,
    z_init: jax.Array | None = None,
    mask: jax.Array | None = None,
    latent_dim: int = 64,
    **options,
) -> GalaxyFitResult:
    """MAP fit of one ``(64, 64)`` stamp by the decoder (latents, flux, sub-pixel centre).

    Parameters
    ----------
    decoder
        Pure ``z -> unit-flux image`` function (``vae.decoder_function()``), reused across calls.
    image
        Stamp in any flux units (the flux is fitted); centred on the light to within a few px.
    noise_variance
        Per-pixel noise variance, scalar or ``(64, 64)``, units of ``image`` squared.
    z_init
        Starting latents, typically the encoder mean ``vae.encode(image / image.sum())[0]``
        (zeros when None).
    mask
        Optional 0/1 pixel mask (1 = used).
    latent_dim
        Length of ``z`` when ``z_init`` is None.
    **options
        ``max_iter``, ``gtol``, ``ftol``, ``prior_weight``, ``fit_shift`` of
        :func:`make_galaxy_fitter`.

    Returns
    -------
    GalaxyFitResult
    """
    fit_one, _ = make_galaxy_fitter(decoder, **options)
    image, var, z0, mask = _prepare(image, noise_variance, z_init, mask, latent_dim, False)
    return fit_one(image, var, z0, mask)


def fit_galaxies(
    decoder: Callable[[jax.Array], jax.Array],
    images: jax.Array,
    noise_variances: jax.Array | float,
    *,
    z_init: jax.Array | None = None,
    mask: jax.Array | None = None,
    latent_dim: int = 64,
    chunk_size: int = 16,
    **options,
) -> GalaxyFitResult:
    """Batched :func:`fit_galaxy` of ``(B, 64, 64)`` stamps in one compiled call.

    Galaxies are fitted ``chunk_size`` at a time by lock-step L-BFGS (one batched decoder
    evaluation per iteration, ``max_iter`` iterations; each galaxy keeps its own L-BFGS memory,
    step length and stopping rule, and stops changing once converged), chunks one after another
    with ``jax.lax.map``. The optimum matches :func:`fit_galaxy` to within the stopping
    tolerances; on CPU 30 iterations already give nearly the same chi^2 at twice the speed.
    ``noise_variances`` is a scalar, ``(B,)`` or ``(B, 64, 64)``; ``z_init`` is ``(B, latent_dim)``
    or None. Returns a :class:`GalaxyFitResult` whose fields have a leading batch axis.
    """
    _, fit_batch = make_galaxy_fitter(decoder, **options)
    images, var, z0, mask = _prepare(images, noise_variances, z_init, mask, latent_dim, True)
    chunk_size = max(1, min(int(chunk_size), images.shape[0]))
    return fit_batch(images, var, z0, mask, chunk_size=chunk_size)


# --------------------------------------------------------------------- comparison models


def _grid_coordinates(shape, pixel_scale, supersampling):
    ny, nx = shape
    f = supersampling
    xs = (np.arange(nx * f) + 0.5) / f - 0.5 - (nx - 1) / 2.0
    ys = (np.arange(ny * f) + 0.5) / f - 0.5 - (ny - 1) / 2.0
    x, y = np.meshgrid(xs * pixel_scale, ys * pixel_scale)
    return jnp.asarray(x), jnp.asarray(y)


def _downsample(img, f):
    ny, nx = img.shape[0] // f, img.shape[1] // f
    return img.reshape(ny, f, nx, f).mean(axis=(1, 3))


def _reduced(chi2, n_pix, n_par):
    return float(chi2 / max(n_pix - n_par, 1))


def _moments(image, pixel_scale):
    img = np.clip(np.asarray(image, np.float64), 0, None)
    ny, nx = img.shape
    y, x = np.mgrid[:ny, :nx]
    x = (x - (nx - 1) / 2.0) * pixel_scale
    y = (y - (ny - 1) / 2.0) * pixel_scale
    s = img.sum() + 1e-30
    cx, cy = (img * x).sum() / s, (img * y).sum() / s
    qxx = (img * (x - cx) ** 2).sum() / s
    qyy = (img * (y - cy) ** 2).sum() / s
    qxy = (img * (x - cx) * (y - cy)).sum() / s
    return cx, cy, qxx, qyy, qxy


@functools.lru_cache(maxsize=8)
def _sersic_fitter(shape, pixel_scale, supersampling, max_iter):
    from vaelens.lensing import Sersic, convolve_psf

    x, y = _grid_coordinates(shape, pixel_scale, supersampling)

    def render(p, psf):
        # p = (log R, log n, t1, t2, cx, cy); |e| < 1 via tanh of the polar radius
        t = jnp.sqrt(p[2] ** 2 + p[3] ** 2 + 1e-12)
        scale = jnp.tanh(t) * 0.95 / t
        s = Sersic(
            amp=1.0,
            R_sersic=jnp.exp(p[0]),
            n_sersic=jnp.clip(jnp.exp(p[1]), 0.2, 10.0),
            e1=p[2] * scale,
            e2=p[3] * scale,
            center_x=p[4],
            center_y=p[5],
        )
        img = _downsample(s.surface_brightness(x, y), supersampling) * pixel_scale**2
        return convolve_psf(img, psf)

    def fit(image, w, psf, p0):
        def objective(p):
            m = render(p, psf)
            a = _profiled_flux(image, m, w)
            return 0.5 * jnp.sum(w * (image - a * m) ** 2)

        p, n_iter, _ = _lbfgs_minimize(objective, p0, max_iter, 1e-4, 1e-7)
        m = render(p, psf)
        a = _profiled_flux(image, m, w)
        return p, a, a * m, jnp.sum(w * (image - a * m) ** 2)

    return jax.jit(jax.vmap(fit, in_axes=(None, None, None, 0)))


def fit_sersic(
    image: np.ndarray,
    noise_variance: np.ndarray | float,
    *,
    psf: np.ndarray | None = None,
    pixel_scale: float = 0.03,
    supersampling: int = 3,
    max_iter: int = 200,
    mask: np.ndarray | None = None,
) -> ParametricFitResult:
    """Fit a PSF-convolved elliptical Sersic profile (lenstronomy conventions) to a stamp.

    Multi-start L-BFGS (Sersic index 1 and 4, two sizes from the second moments) over
    ``(log R_sersic, log n_sersic, e1, e2, center_x, center_y)``, amplitude profiled out;
    the image is rendered with ``supersampling`` x ``supersampling`` sub-pixels per pixel.

    Returns
    -------
    ParametricFitResult
        ``n_params = 7``.
    """
    image = jnp.asarray(image, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    w = _weights(image, noise_variance, mask)
    psf_arr = jnp.asarray(np.ones((1, 1)) if psf is None else psf, image.dtype)
    cx, cy, qxx, qyy, qxy = _moments(image, pixel_scale)
    r0 = max(np.sqrt(max(qxx + qyy, 1e-8) / 2.0) * 1.18, pixel_scale)
    tr = qxx + qyy + 1e-30
    e1m, e2m = 0.5 * (qxx - qyy) / tr, qxy / tr
    starts = np.array(
        [[np.log(r0 * f), np.log(n), e1m, e2m, cx, cy] for n in (1.0, 4.0) for f in (0.7, 1.5)]
    )
    fit = _sersic_fitter(tuple(image.shape), float(pixel_scale), int(supersampling), max_iter)
    p, a, models, chi2 = fit(image, w, psf_arr, jnp.asarray(starts, image.dtype))
    best = int(jnp.argmin(chi2))
    pb = np.asarray(p[best])
    t = np.sqrt(pb[2] ** 2 + pb[3] ** 2 + 1e-12)
    scale = np.tanh(t) * 0.95 / t
    n_pix = int(jnp.sum(w > 0))
    # amplitude in lenstronomy units: model = a * rendered unit-amp profile
    params = {
        "amp": float(a[best]),
        "R_sersic": float(np.exp(pb[0])),
        "n_sersic": float(np.clip(np.exp(pb[1]), 0.2, 10.0)),
        "e1": float(pb[2] * scale),
        "e2": float(pb[3] * scale),
        "center_x": float(pb[4]),
        "center_y": float(pb[5]),
    }
    c2 = float(chi2[best])
    return ParametricFitResult(params, np.asarray(models[best]), c2, _reduced(c2, n_pix, 7), 7)


@functools.lru_cache(maxsize=8)
def _shapelet_solver(shape, pixel_scale, n_max, supersampling):
    from vaelens.lensing import convolve_psf, shapelet_design_matrix

    x, y = _grid_coordinates(shape, pixel_scale, supersampling)

    def solve(image, w, psf, beta, cx, cy):
        basis = shapelet_design_matrix(x, y, n_max, beta, cx, cy)  # (Y, X, K)
        basis = jnp.moveaxis(basis, -1, 0)
        k = basis.shape[0]
        basis = jax.vmap(lambda b: _downsample(b, supersampling))(basis)
        basis = convolve_psf(basis, psf)
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


def fit_shapelets(
    image: np.ndarray,
    noise_variance: np.ndarray | float,
    *,
    n_max: int = 20,
    psf: np.ndarray | None = None,
    pixel_scale: float = 0.03,
    betas: np.ndarray | None = None,
    supersampling: int = 1,
    mask: np.ndarray | None = None,
) -> ParametricFitResult:
    """Fit PSF-convolved shapelets up to order ``n_max`` by a weighted linear solve.

    The centre is fixed at the light's first moment; the scale ``beta`` is chosen on a
    logarithmic grid (default 1 to 10 px) and refined by a parabola in ``log beta`` through the
    three best grid points.

    Returns
    -------
    ParametricFitResult
        ``n_params = (n_max + 1)(n_max + 2)/2 + 1`` (coefficients and beta; 232 for n_max = 20).
    """
    image = jnp.asarray(image, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    w = _weights(image, noise_variance, mask)
    psf_arr = jnp.asarray(np.ones((1, 1)) if psf is None else psf, image.dtype)
    cx, cy, *_ = _moments(image, pixel_scale)
    if betas is None:
        betas = pixel_scale * np.geomspace(1.0, 10.0, 12)
    betas = np.asarray(betas, np.float64)
    solve, solve_grid = _shapelet_solver(
        tuple(image.shape), float(pixel_scale), int(n_max), int(supersampling)
    )
    _, _, chi2 = solve_grid(image, w, psf_arr, jnp.asarray(betas, image.dtype), cx, cy)
    chi2 = np.asarray(chi2)
    i = int(np.clip(np.nanargmin(chi2), 1, len(betas) - 2))
    lb = np.log(betas[i - 1 : i + 2])
    c = chi2[i - 1 : i + 2]
    denom = (lb[0] - lb[1]) * (lb[0] - lb[2]) * (lb[1] - lb[2])
    a2 = (lb[2] * (c[1] - c[0]) + lb[1] * (c[0] - c[2]) + lb[0] * (c[2] - c[1])) / denom
    a1 = (
        lb[2] ** 2 * (c[0] - c[1]) + lb[1] ** 2 * (c[2] - c[0]) + lb[0] ** 2 * (c[1] - c[2])
    ) / denom
    candidates = [betas[int(np.nanargmin(chi2))]]
    if a2 > 0:
        candidates.append(float(np.exp(np.clip(-a1 / (2 * a2), lb[0], lb[2]))))
    best = None
    for beta in candidates:
        coeffs, model, c2 = solve(image, w, psf_arr, beta, cx, cy)
        if best is None or float(c2) < best[3]:
            best = (beta, coeffs, model, float(c2))
    beta, coeffs, model, c2 = best
    k = (n_max + 1) * (n_max + 2) // 2
    n_pix = int(jnp.sum(w > 0))
    params = {"beta": float(beta), "coeffs": np.asarray(coeffs), "center_x": cx, "center_y": cy}
    return ParametricFitResult(params, np.asarray(model), c2, _reduced(c2, n_pix, k + 1), k + 1)
