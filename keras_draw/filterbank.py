"""The Gaussian filterbank of DRAW's attention window (eqs. 19-26 of Gregor et al. 2015).

Pixel coordinates are 1-based (a = 1..A, b = 1..B) and so is the grid index (i = 1..N), as in
the paper: with g̃ = 0 eq. 22 puts the window centre at (A + 1) / 2, the centre of pixels 1..A.
A 0-based pixel index p maps to the paper's coordinate a = p + 1.
"""

from keras import ops


def grid_offsets(n):
    """Offsets (i − N/2 − 0.5) of eqs. 19-20 for i = 1..N, as floats: shape (N,)."""
    i = ops.arange(1, n + 1, dtype="float32")
    return i - n / 2.0 - 0.5  # eqs. 19-20, with a 1-based grid (docs/paper.md pitfall 1) and float N/2


def filter_centres(g, delta, n):
    """Centres μ^i = g + (i − N/2 − 0.5) δ of the N filters on one axis (eqs. 19-20).

    Args:
        g: window centre, shape (batch,).
        delta: stride between filters, shape (batch,).
        n: grid size N.

    Returns:
        (batch, N) filter centres.
    """
    return g[:, None] + grid_offsets(n)[None, :] * delta[:, None]  # eq. 19 (or 20)


def axis_filterbank(g, delta, sigma2, n, size):
    """One axis of the filterbank, F[i, a] = exp(−(a − μ^i)² / (2σ²)) / Z (eq. 25 or 26).

    The normalisation is a softmax over the pixels a: the same values, computed with the largest
    exponent subtracted first, so that no row underflows to zero. A window far off the image still
    reads its nearest pixels, and h passes a gradient back to it; with exp then divide, a row
    whose every weight underflowed read zeros and passed none, and a classifier whose windows had
    strayed off the image stopped learning (docs/paper.md).

    Returns:
        (batch, N, size) filters whose rows sum to 1.
    """
    mu = filter_centres(g, delta, n)  # (batch, N)
    a = ops.arange(1, size + 1, dtype="float32")  # 1-based pixel coordinates, (size,)
    distance2 = ops.square(a[None, None, :] - mu[:, :, None])  # (batch, N, size)
    return ops.softmax(-distance2 / (2.0 * sigma2[:, None, None]), axis=-1)  # eq. 25: exp(−(a − μ)² / (2σ²)) / Z, pitfall 2


def filterbank(g_x, g_y, delta, sigma2, n, image_height, image_width):
    """The horizontal and vertical filterbanks F_X, F_Y (eqs. 25-26).

    Args:
        g_x, g_y: window centre in pixel coordinates, shape (batch,).
        delta: stride δ, shape (batch,).
        sigma2: isotropic variance σ², shape (batch,).
        n: grid size N.
        image_height: B, the image height.
        image_width: A, the image width.

    Returns:
        f_x of shape (batch, N, A) and f_y of shape (batch, N, B).
    """
    f_x = axis_filterbank(g_x, delta, sigma2, n, image_width)  # eq. 25
    f_y = axis_filterbank(g_y, delta, sigma2, n, image_height)  # eq. 26
    return f_x, f_y
