"""A pixelated source image placed in the source plane and interpolated bicubically."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._pytree import pytree_dataclass
from .._validation import check_finite, check_positive
from .._xla import broadcast_scalars
from ._base import LightProfile

__all__ = ["PixelatedSource", "keys_cubic_interpolate"]

_PAD = 5  # zero padding (pixels) around the image; the Keys kernel reaches 2 pixels


def _keys_weights(t):
    """Keys (1981) cubic-convolution weights (a = -1/2) for taps -1, 0, 1, 2 at offset ``t``."""
    t2 = t * t
    t3 = t2 * t
    return (
        0.5 * (-t3 + 2.0 * t2 - t),
        0.5 * (3.0 * t3 - 5.0 * t2 + 2.0),
        0.5 * (-3.0 * t3 + 4.0 * t2 + t),
        0.5 * (t3 - t2),
    )


def _keys_dweights(t):
    """Derivatives of :func:`_keys_weights` with respect to ``t``."""
    t2 = t * t
    return (
        0.5 * (-3.0 * t2 + 4.0 * t - 1.0),
        0.5 * (9.0 * t2 - 10.0 * t),
        0.5 * (-9.0 * t2 + 8.0 * t + 1.0),
        0.5 * (3.0 * t2 - 2.0 * t),
    )


def _block_table(image):
    """``((ny+6)*(nx+6), 16)``: for every cell, the 4x4 block of the zero-padded image it reads.

    Cell ``(r0 + 3, c0 + 3)`` (``r0``, ``c0`` = floor of the fractional indices, clipped to
    ``[-3, n+2]``) holds pixels ``r0-1..r0+2`` x ``c0-1..c0+2``; column ``4a + b`` of the table
    is tap ``(a, b)``. One windowed gather of a table row per point computes the cell index
    once (16 separate gathers make XLA:CPU recompute it in each of them), and its transpose is
    one windowed scatter-add.
    """
    ny, nx = image.shape
    padded = jnp.pad(image, _PAD)
    hc, wc = ny + 6, nx + 6
    blocks = [padded[1 + a : 1 + a + hc, 1 + b : 1 + b + wc] for a in range(4) for b in range(4)]
    return jnp.stack(blocks, axis=-1).reshape(hc * wc, 16)


_TAPS_FIRST = jax.lax.GatherDimensionNumbers(
    offset_dims=(0,), collapsed_slice_dims=(0,), start_index_map=(0,)
)


def _gather(table, cell):
    """The 16 taps of every point as a list of arrays shaped like ``cell``."""
    taps = jax.lax.gather(
        table,
        cell[..., None],
        _TAPS_FIRST,
        slice_sizes=(1, 16),
        mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS,
    )
    return [taps[k] for k in range(16)]


@jax.checkpoint
def _tangent_sum(table, cell, tx, ty):
    """``sum_k table[cell, k] w_k(tx, ty)`` with taps last; used on the tangent (linear) path.

    Written so that its transpose (reverse mode) is a broadcast multiply in the layout XLA:CPU
    wants for the windowed scatter-add, with no transposes or per-tap padding. The checkpoint
    makes reverse mode recompute the 16 weights from ``tx``, ``ty`` next to the scatter
    instead of storing them (2.5 MB for 40k points) in the forward pass.
    """
    wx, wy = _keys_weights(tx), _keys_weights(ty)
    w = jnp.stack(wy, -1)[..., :, None] * jnp.stack(wx, -1)[..., None, :]
    taps = table.at[cell].get(mode="promise_in_bounds")
    return jnp.sum(taps * w.reshape(cell.shape + (16,)), axis=-1)


def _weighted_sum(vals, wy, wx):
    out = 0.0
    for a in range(4):
        row = vals[4 * a] * wx[0] + vals[4 * a + 1] * wx[1]
        row = row + vals[4 * a + 2] * wx[2] + vals[4 * a + 3] * wx[3]
        out = out + row * wy[a]
    return out


def _cells(shape, col, row):
    ny, nx = shape
    colc = jnp.clip(col, -3.0, nx + 2.0)
    rowc = jnp.clip(row, -3.0, ny + 2.0)
    c0 = jnp.floor(colc)
    r0 = jnp.floor(rowc)
    cell = (r0.astype(jnp.int32) + 3) * (nx + 6) + (c0.astype(jnp.int32) + 3)
    # Materialise the indices: otherwise XLA may fuse the (possibly expensive) computation of
    # the coordinates into each of the 16 gathers and repeat it.
    return jax.lax.optimization_barrier((cell, colc - c0, rowc - r0))


def keys_cubic_interpolate(image, col, row):
    """Interpolate ``image`` at fractional pixel indices with Keys cubic convolution.

    Parameters
    ----------
    image : array, shape (ny, nx)
        Pixel values; pixel ``[j, i]`` sits at ``(col, row) = (i, j)``.
    col, row : array
        Fractional column and row indices (same shape).

    Returns
    -------
    jax.Array
        Interpolated values. Outside the image the image is extended by zeros, so the
        interpolant is continuous and C1 everywhere, equals the pixel values at integer
        indices and is exactly zero more than 1.5 pixels beyond the outer pixel edges.

    Notes
    -----
    A custom JVP supplies the analytic derivatives with respect to ``col`` and ``row`` and the
    linear map in ``image``, which keeps reverse mode (one windowed scatter-add of the 16 taps
    per point) cheap. Higher derivatives work because the rule is itself made of JAX
    primitives.

    The work runs inside a ``lax.cond`` on "the image is finite" (a non-finite image gives
    NaN everywhere). The conditional is a fusion barrier that XLA:CPU respects (unlike
    ``optimization_barrier``, which it drops): without it XLA fuses the 16 gathers into one
    kernel with the ray tracing and the surface brightness of the other profiles, which then
    cannot be vectorised and runs 1.5-2x slower (``benchmarks/bench_forward.py``).

    References
    ----------
    Keys, R. (1981), IEEE Trans. Acoust. Speech Signal Process. 29, 1153.
    """
    image = jnp.asarray(image)
    col, row = jnp.broadcast_arrays(col, row)
    finite = jnp.all(jnp.isfinite(image))
    return jax.lax.cond(finite, _keys_cubic, _all_nan, image, col, row)


def _all_nan(image, col, row):
    return jnp.full(col.shape, jnp.nan, jnp.result_type(image, col, row))


@jax.custom_jvp
def _keys_cubic(image, col, row):
    cell, tx, ty = _cells(image.shape, col, row)
    vals = _gather(_block_table(image), cell)
    return _weighted_sum(vals, _keys_weights(ty), _keys_weights(tx))


@_keys_cubic.defjvp
def _keys_cubic_interpolate_jvp(primals, tangents):
    image, col, row = primals
    d_image, d_col, d_row = tangents
    ny, nx = image.shape
    cell, tx, ty = _cells(image.shape, col, row)
    wx, wy = _keys_weights(tx), _keys_weights(ty)
    vals = _gather(_block_table(image), cell)
    # The value and both partial derivatives read the same 16 taps. XLA:CPU still emits
    # three passes over them (it splits the stack), but this form with the checkpointed
    # tangent below measured faster than three separate sums (interpolation value-and-grad
    # 0.93-0.98 -> 0.73-0.79 ms for 40 000 points).
    out, d_dcol, d_drow = jnp.stack(
        [
            _weighted_sum(vals, wy, wx),
            _weighted_sum(vals, wy, _keys_dweights(tx)),
            _weighted_sum(vals, _keys_dweights(ty), wx),
        ]
    )
    inside_c = (col > -3.0) & (col < nx + 2.0)
    inside_r = (row > -3.0) & (row < ny + 2.0)
    d_dcol = jnp.where(inside_c, d_dcol, 0.0)
    d_drow = jnp.where(inside_r, d_drow, 0.0)
    t_out = _tangent_sum(_block_table(d_image), cell, tx, ty)
    t_out = t_out + d_dcol * d_col + d_drow * d_row
    return out, t_out


@pytree_dataclass
class PixelatedSource(LightProfile):
    """A pixelated image (e.g. the decoded 64x64 VAE source) placed in the source plane.

    The image is a square (or rectangular) array of ``(ny, nx)`` pixels whose full width along
    its own x axis is ``size`` arcsec (pixel size ``size / nx``), centred on
    ``(center_x, center_y)`` and rotated counter-clockwise by ``angle``. Row index increases
    with the image's own y axis (``imshow(origin='lower')`` orientation).

    .. math:: I(x, y) = A\\, \\mathcal{K}[{\\rm image}](u/d + (n_x-1)/2,\\; v/d + (n_y-1)/2)

    with :math:`(u, v)` the rotated offsets from the centre, :math:`d` the pixel size and
    :math:`\\mathcal{K}` Keys cubic convolution (exact at pixel centres, C1). The image is
    extended by zeros beyond its edges, so the interpolant is zero outside the footprint of
    full width ``size`` widened by the kernel's reach (1.5 pixels), continuous everywhere and
    differentiable with respect to the pixel values, ``center_x``, ``center_y``, ``size``,
    ``angle`` and ``amp``.

    Parameters
    ----------
    image : array, shape (ny, nx)
        Pixel values (surface brightness units per arcsec^2 before ``amp``).
    center_x, center_y : float
        Centre of the image in arcsec.
    size : float
        Full width of the image along its x axis in arcsec (> 0).
    angle : float
        Counter-clockwise rotation in radians.
    amp : float
        Multiplicative amplitude.
    """

    image: jnp.ndarray
    center_x: float = 0.0
    center_y: float = 0.0
    size: float = 1.0
    angle: float = 0.0
    amp: float = 1.0

    def __post_init__(self):
        if jnp.ndim(self.image) != 2:
            raise ValueError(f"image must be 2-D (ny, nx), got shape {jnp.shape(self.image)}")
        if min(jnp.shape(self.image)) < 2:
            raise ValueError(f"image must be at least 2x2, got shape {jnp.shape(self.image)}")
        check_finite("image", self.image)
        check_positive("size", self.size)
        for name in ("center_x", "center_y", "angle", "amp"):
            check_finite(name, getattr(self, name))

    @property
    def pixel_size(self):
        """Pixel size in arcsec (``size / nx``)."""
        return self.size / jnp.shape(self.image)[1]

    def pixel_coordinates(self):
        """Source-plane coordinates ``(x, y)`` of the image's pixel centres, each ``(ny, nx)``."""
        ny, nx = jnp.shape(self.image)
        d = self.pixel_size
        u = (jnp.arange(nx) - 0.5 * (nx - 1)) * d
        v = (jnp.arange(ny) - 0.5 * (ny - 1)) * d
        uu, vv = jnp.meshgrid(u, v)
        c, s = jnp.cos(self.angle), jnp.sin(self.angle)
        return self.center_x + c * uu - s * vv, self.center_y + s * uu + c * vv

    def surface_brightness(self, x, y):
        ny, nx = jnp.shape(self.image)
        dx, dy = jnp.broadcast_arrays(x - self.center_x, y - self.center_y)
        inv_d = nx / self.size
        # each scalar broadcast once: one reduction per parameter in reverse mode
        c, s = broadcast_scalars(dx.shape, jnp.cos(self.angle) * inv_d, jnp.sin(self.angle) * inv_d)
        col = c * dx + s * dy + 0.5 * (nx - 1)
        row = -s * dx + c * dy + 0.5 * (ny - 1)
        return self.amp * keys_cubic_interpolate(self.image, col, row)
