"""Pixel-consistent composites: every band of a pixel comes from one chosen observation.

Unlike the per-band percentile (s2basemap.percentile), these methods choose, per
pixel, one valid observation and copy all its bands, so a pixel never mixes the
colour of one day with the infrared of another. Two methods, both exact:

Inputs: `values` (N, B, H, W) uint16 with the bands Red, Green, Blue, NIR first,
and `valid` (N, H, W) bool. The caller orders the N observations by (acquisition
time, scene id), so **every tie goes to the lower observation index i**: the
earlier acquisition wins, whatever the machine or the thread layout.
Outputs: `out` (B, H, W) uint16, all bands of the chosen observation; `count`
(H, W) uint16, the number of valid observations; `chosen` (H, W) int16, the index
i of the chosen observation. A pixel without a valid observation gets out 0,
count 0, chosen -1.

pick (a percentile of a per-observation key, nearest rank)
    key, by `index` (PICK_INDEXES; the kernels take its number `kind`):
      0 brightness    R + G + B as an integer (the order of the mean, exactly)
      1 ndvi-inverse  (double)(R - NIR) / (double)(R + NIR), one correctly rounded
                      float64 division, when R + NIR > 0; else 0.0
      2..5            red, green, blue, nir: that band's value
    order: (key ascending, i ascending) over the n valid observations.
    rank:  q = percentile / 100 (float64), r = ceil(q * n) with q * n one rounded
           float64 multiply, k = min(max(r, 1), n) - 1 (0-based).
    The chosen observation is the one with exactly k observations before it.

medoid (the observation closest to all the others)
    cost_i = sum over valid j, in ascending j (j == i adds 0.0), of
             sqrt((double)d2_ij),  d2_ij = sum over bands of (v_ib - v_jb)^2
    with d2 in 64-bit integers, the sqrt correctly rounded (IEEE) and the sum a
    sequence of float64 additions in that order. The minimum cost wins, ties to
    the lower i.

Why exact: a basemap is rebuilt tile by tile on whatever machine is free, CPU or
GPU. With every operation pinned to one IEEE rounding (the CUDA kernels spell them
out as __dmul_rn, __ddiv_rn, __dsqrt_rn, __dadd_rn, which the compiler may not fuse
or reorder), the two back ends choose the same observation for every pixel, so
adjacent tiles made on different machines do not show seams, and a rerun
reproduces the product bit for bit.

How: the CPU kernels (numba) run rows in parallel and each step across all the
columns of a row (SIMD). pick packs (key, i) into one int64 whose integer order is
the (key, i) order and keeps only the k + 1 smallest (or the n - k largest, when
fewer) in a branch-free compare-exchange chain, like the percentile kernel. medoid
computes each pair's distance once and adds it to both costs, which keeps every
cost's additions in ascending j. The CUDA kernels (one thread per pixel) hold no
per-thread arrays, so the GPU has no limit on N: pick counts for each valid i the
valid j that precede it, medoid sums each cost in full (stopping once it cannot
win).
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numba
import numpy as np

from s2basemap.percentile import by_row_bands, launch_grid

log = logging.getLogger(__name__)

METHODS = ("pick", "medoid")
PICK_INDEXES = {"brightness": 0, "ndvi-inverse": 1, "red": 2, "green": 3, "blue": 4, "nir": 5}
PICK_BANDS = 4  # the keys read Red, Green, Blue and NIR: bands 0-3
MAX_OBSERVATIONS = 32767  # `chosen` is int16

# pick's packed key: (key << INDEX_BITS) | i, key >= 1, so the packed keys of the
# valid observations are distinct, ordered like (key, i), and below SENTINEL, which
# marks an invalid observation. XOR with FLIP reverses their order (for keeping the
# largest instead of the smallest) and keeps them below SENTINEL.
INDEX_BITS = 16
INDEX_MASK = (1 << INDEX_BITS) - 1
SENTINEL = np.int64(2**63 - 1)
FLIP = np.int64(2**63 - 1)
# ndvi-inverse as an integer: the IEEE bits of a double d in [-1, 1] as an int64, for
# d < 0 those of |d| negated, are ordered like d (and +0.0 is 0). Dropping the low 16 of them keeps the
# order strict: two different ratios (R - NIR) / (R + NIR) with R, NIR <= 65535 differ
# by at least 1 / 131070^2 = 5.8e-11, which is over 2.6e5 float64 steps (2^-52 and
# finer in [-1, 1]), so their bit patterns are more than 2^16 apart; equal ratios
# give the same double. The offset makes -1.0 map to 0 (then + 1, like every key).
NDVI_SHIFT = 16
NDVI_OFFSET = np.int64(0x3FF0 << 32)
MAGNITUDE = np.int64(2**63 - 1)


@numba.njit(cache=True)
def nearest_rank(n: int, q: float) -> int:
    """0-based nearest rank of n >= 1 values: min(max(ceil(q * n), 1), n) - 1."""
    r = int(np.ceil(q * n))
    return min(max(r, 1), n) - 1


def kept_ranks(n_obs: int, q: float) -> tuple[int, bool]:
    """(keep, reverse): how many packed keys the pick chain keeps per pixel, and whether
    it keeps the largest (reversed order) rather than the smallest, so that the rank
    of every possible valid count n <= n_obs is among the kept."""
    if n_obs == 0:
        return 0, False
    n = np.arange(1, n_obs + 1)
    k = np.minimum(np.maximum(np.ceil(q * n), 1), n).astype(np.int64) - 1
    forward, backward = int(k.max()) + 1, int((n - 1 - k).max()) + 1
    return (forward, False) if forward <= backward else (backward, True)


@numba.njit(cache=True, inline="always")
def _row_keys(values, i, row, kind, key, ratio, bits):
    """The key (+ 1) of observation i across the columns of a row, as int64."""
    width = key.shape[0]
    if kind == 0:
        red, green, blue = values[i, 0, row], values[i, 1, row], values[i, 2, row]
        for col in range(width):
            key[col] = np.int64(red[col]) + np.int64(green[col]) + np.int64(blue[col]) + 1
    elif kind == 1:
        red, nir = values[i, 0, row], values[i, 3, row]
        for col in range(width):
            a, c = np.int64(red[col]), np.int64(nir[col])
            # R + NIR == 0 only when both are 0: then 0.0 / 1.0 = +0.0, the defined key
            ratio[col] = np.float64(a - c) / np.float64(max(a + c, 1))
        for col in range(width):
            s = bits[col]
            if s < 0:
                s = -(s & MAGNITUDE)
            key[col] = (s >> NDVI_SHIFT) + NDVI_OFFSET + 1
    else:
        band = values[i, kind - 2, row]
        for col in range(width):
            key[col] = np.int64(band[col]) + 1


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _pick_cpu(values, valid, q, kind, keep, reverse, out, count, chosen):
    """Rows in parallel; within a row, every step across all the columns.

    Each observation's packed key (key << 16 | i, or its reversal) goes through a
    chain of `keep` compare-exchanges (min/max, no branches) that holds the `keep`
    smallest packed keys seen, sorted; an invalid observation is SENTINEL, which
    sorts after all of them. The nearest rank is then read off the chain.
    """
    n_obs, n_bands, height, width = values.shape
    flip = FLIP if reverse else np.int64(0)
    for row in numba.prange(height):
        n = np.zeros(width, dtype=np.int64)
        for i in range(n_obs):
            ok = valid[i, row]
            for col in range(width):
                n[col] += ok[col]
        kept = np.full((keep, width), SENTINEL, dtype=np.int64)
        key = np.empty(width, dtype=np.int64)
        ratio = np.empty(width, dtype=np.float64)
        bits = ratio.view(np.int64)
        incoming = np.empty(width, dtype=np.int64)
        for i in range(n_obs):
            _row_keys(values, i, row, kind, key, ratio, bits)
            ok = valid[i, row]
            for col in range(width):
                packed = ((key[col] << INDEX_BITS) | i) ^ flip
                incoming[col] = packed if ok[col] else SENTINEL
            for j in range(keep):
                kept_j = kept[j]
                for col in range(width):
                    a, x = kept_j[col], incoming[col]
                    kept_j[col] = min(a, x)
                    incoming[col] = max(a, x)
        for col in range(width):
            m = n[col]
            count[row, col] = m
            if m == 0:
                chosen[row, col] = -1
                for b in range(n_bands):
                    out[b, row, col] = 0
                continue
            k = nearest_rank(m, q)
            if reverse:
                k = m - 1 - k
            i = (kept[k, col] ^ flip) & INDEX_MASK
            chosen[row, col] = i
            for b in range(n_bands):
                out[b, row, col] = values[i, b, row, col]


@numba.njit(cache=True, inline="always")
def _distances4(values, i, j, row, d2):
    """Squared distances of observations i and j over 4 bands across a row (exact)."""
    a0, a1, a2, a3 = values[i, 0, row], values[i, 1, row], values[i, 2, row], values[i, 3, row]
    b0, b1, b2, b3 = values[j, 0, row], values[j, 1, row], values[j, 2, row], values[j, 3, row]
    for col in range(d2.shape[0]):
        red = np.float64(np.int32(a0[col]) - np.int32(b0[col]))
        green = np.float64(np.int32(a1[col]) - np.int32(b1[col]))
        blue = np.float64(np.int32(a2[col]) - np.int32(b2[col]))
        nir = np.float64(np.int32(a3[col]) - np.int32(b3[col]))
        d2[col] = red * red + green * green + blue * blue + nir * nir


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _medoid_cpu(values, valid, out, count, chosen):
    """Rows in parallel; within a row, every step across all the columns.

    Pairs (i, j), i < j, in the order j ascending, then i ascending: the pair's
    distance goes to cost[j] (its term i; the terms below j arrive in ascending i)
    and to cost[i] (its term j; the terms above i arrive as j ascends), so each cost
    is added up in ascending j exactly as defined. An invalid partner adds 0.0,
    which changes no sum. d2 in float64 is exact: each square is below 2^32 and the
    sum of four below 2^34, far under 2^53.
    """
    n_obs, n_bands, height, width = values.shape
    for row in numba.prange(height):
        cost = np.zeros((n_obs, width), dtype=np.float64)
        d2 = np.empty(width, dtype=np.float64)
        for j in range(n_obs):
            ok_j = valid[j, row]
            cost_j = cost[j]
            for i in range(j):
                ok_i = valid[i, row]
                cost_i = cost[i]
                if n_bands == 4:  # the usual stack: one pass over the columns
                    _distances4(values, i, j, row, d2)
                else:
                    d2[:] = 0.0
                    for b in range(n_bands):
                        vi, vj = values[i, b, row], values[j, b, row]
                        for col in range(width):
                            d = np.float64(np.int32(vi[col]) - np.int32(vj[col]))
                            d2[col] += d * d
                for col in range(width):
                    s = np.sqrt(d2[col]) if ok_i[col] and ok_j[col] else 0.0
                    cost_i[col] += s
                    cost_j[col] += s
        best = np.full(width, np.inf)
        pick = np.full(width, -1, dtype=np.int64)
        n = np.zeros(width, dtype=np.int64)
        for i in range(n_obs):
            ok = valid[i, row]
            cost_i = cost[i]
            for col in range(width):
                n[col] += ok[col]
                if ok[col] and cost_i[col] < best[col]:  # costs are finite
                    best[col] = cost_i[col]
                    pick[col] = i
        for col in range(width):
            count[row, col] = n[col]
            i = pick[col]
            chosen[row, col] = i
            for b in range(n_bands):
                out[b, row, col] = values[i, b, row, col] if i >= 0 else 0


def _check(values, valid, percentile=None, index=None) -> int:
    """Validate the inputs like percentile._check; the kind of `index` (0 for medoid)."""
    if values.dtype != np.uint16 or valid.dtype != np.bool_:
        raise TypeError(
            f"expected uint16 values and bool validity, got {values.dtype}, {valid.dtype}"
        )
    if values.ndim != 4 or valid.shape != (values.shape[0], *values.shape[2:]):
        raise ValueError(f"shape mismatch: values {values.shape}, valid {valid.shape}")
    if values.shape[0] > MAX_OBSERVATIONS:
        raise ValueError(
            f"{values.shape[0]} observations exceed {MAX_OBSERVATIONS} (chosen is int16)"
        )
    if percentile is not None and not 0 <= percentile <= 100:
        raise ValueError(f"percentile {percentile} is not within 0-100")
    if index is None:
        return 0
    if percentile is None:
        raise ValueError("pick needs a percentile (0-100)")
    if not isinstance(index, str) or index not in PICK_INDEXES:
        raise ValueError(f"unknown pick index {index!r}: expected one of {', '.join(PICK_INDEXES)}")
    if values.shape[1] < PICK_BANDS:
        raise ValueError(
            f"pick needs the bands Red, Green, Blue, NIR; got {values.shape[1]} band(s)"
        )
    return PICK_INDEXES[index]


def _outputs(xp, shape):
    _, n_bands, height, width = shape
    return (
        xp.empty((n_bands, height, width), dtype=xp.uint16),
        xp.empty((height, width), dtype=xp.uint16),
        xp.empty((height, width), dtype=xp.int16),
    )


def _nodata(out, count, chosen):
    out[:], count[:], chosen[:] = 0, 0, -1
    return out, count, chosen


def pick_cpu(values: np.ndarray, valid: np.ndarray, percentile: float, index: str = "brightness"):
    """(N, B, H, W) uint16 values, (N, H, W) bool valid ->
    ((B, H, W) uint16 out, (H, W) uint16 count, (H, W) int16 chosen)."""
    kind = _check(values, valid, percentile, index)
    out, count, chosen = _outputs(np, values.shape)
    if values.shape[0] == 0:
        return _nodata(out, count, chosen)
    q = percentile / 100.0
    keep, reverse = kept_ranks(values.shape[0], q)
    _pick_cpu(values, valid, q, kind, keep, reverse, out, count, chosen)
    return out, count, chosen


def medoid_cpu(values: np.ndarray, valid: np.ndarray):
    """(N, B, H, W) uint16 values, (N, H, W) bool valid ->
    ((B, H, W) uint16 out, (H, W) uint16 count, (H, W) int16 chosen)."""
    _check(values, valid)
    out, count, chosen = _outputs(np, values.shape)
    if values.shape[0] == 0:
        return _nodata(out, count, chosen)
    _medoid_cpu(values, valid, out, count, chosen)
    return out, count, chosen


# Both kernels: one thread per pixel, C-ordered (N, B, H, W) values and (N, H, W)
# validity, values[((i * n_bands) + b) * n_pixels + p], valid[i * n_pixels + p].
CUDA_SIGNATURE = r"""(const unsigned short* __restrict__ values, const bool* __restrict__ valid,
                   const double q, const int kind, const int n_obs, const int n_bands,
                   const long long n_pixels, unsigned short* __restrict__ out,
                   unsigned short* __restrict__ count, short* __restrict__ chosen)"""

CUDA_WRITE = r"""
    count[p] = (unsigned short)n;
    chosen[p] = (short)best;
    for (int b = 0; b < n_bands; ++b) {
        out[(long long)b * n_pixels + p] =
            best < 0 ? (unsigned short)0 : values[((long long)best * n_bands + b) * n_pixels + p];
    }
"""

PICK_CUDA_SOURCE = (
    r"""
// The key of observation i at pixel p, as a double (exact for the integer keys).
__device__ double pick_key(const unsigned short* __restrict__ values, const int kind,
                           const int i, const int n_bands, const long long n_pixels,
                           const long long p)
{
    const unsigned short* obs = values + (long long)i * n_bands * n_pixels + p;
    if (kind == 0) return (double)((int)obs[0] + (int)obs[n_pixels] + (int)obs[2 * n_pixels]);
    if (kind == 1) {
        int red = obs[0], nir = obs[3 * n_pixels];
        return red + nir > 0 ? __ddiv_rn((double)(red - nir), (double)(red + nir)) : 0.0;
    }
    return (double)obs[(long long)(kind - 2) * n_pixels];
}

// Nearest rank k of the (key, i) order: the valid i with exactly k valid j before it.
extern "C" __global__
void pick_kernel"""
    + CUDA_SIGNATURE
    + r"""
{
    long long p = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (p >= n_pixels) return;
    int n = 0;
    for (int i = 0; i < n_obs; ++i) n += valid[(long long)i * n_pixels + p] ? 1 : 0;
    int best = -1;
    if (n > 0) {
        int k = (int)ceil(__dmul_rn(q, (double)n));
        k = (k < 1 ? 1 : (k > n ? n : k)) - 1;
        for (int i = 0; i < n_obs && best < 0; ++i) {
            if (!valid[(long long)i * n_pixels + p]) continue;
            const double key = pick_key(values, kind, i, n_bands, n_pixels, p);
            int before = 0;
            for (int j = 0; j < n_obs && before <= k; ++j) {
                if (j == i || !valid[(long long)j * n_pixels + p]) continue;
                const double other = pick_key(values, kind, j, n_bands, n_pixels, p);
                before += (other < key || (other == key && j < i)) ? 1 : 0;
            }
            if (before == k) best = i;
        }
    }
"""
    + CUDA_WRITE
    + "}\n"
)

MEDOID_CUDA_SOURCE = (
    r"""
// The valid i of the least sum of distances, summed in ascending j; ties to the lower i.
extern "C" __global__
void medoid_kernel"""
    + CUDA_SIGNATURE
    + r"""
{
    long long p = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (p >= n_pixels) return;
    int n = 0;
    for (int i = 0; i < n_obs; ++i) n += valid[(long long)i * n_pixels + p] ? 1 : 0;
    int best = -1;
    double best_cost = 0.0;
    for (int i = 0; i < n_obs; ++i) {
        if (!valid[(long long)i * n_pixels + p]) continue;
        double cost = 0.0;
        bool beaten = false;
        for (int j = 0; j < n_obs; ++j) {
            if (!valid[(long long)j * n_pixels + p]) continue;
            long long d2 = 0;
            for (int b = 0; b < n_bands; ++b) {
                long long d = (long long)values[((long long)i * n_bands + b) * n_pixels + p]
                            - (long long)values[((long long)j * n_bands + b) * n_pixels + p];
                d2 += d * d;
            }
            cost = __dadd_rn(cost, __dsqrt_rn((double)d2));
            // the partial sums never decrease: once level with the best, i cannot win
            if (best >= 0 && cost >= best_cost) { beaten = true; break; }
        }
        if (!beaten) { best = i; best_cost = cost; }
    }
"""
    + CUDA_WRITE
    + "}\n"
)

CUDA_KERNELS = {
    "pick": (PICK_CUDA_SOURCE, "pick_kernel"),
    "medoid": (MEDOID_CUDA_SOURCE, "medoid_kernel"),
}


@lru_cache(maxsize=4)
def _compiled(method: str):
    import cupy

    return cupy.RawKernel(*CUDA_KERNELS[method])


def _launch(method: str, d_values, d_valid, q: float, kind: int):
    """Run one method's kernel on C-ordered cupy arrays; returns cupy (out, count, chosen)."""
    if not (d_values.flags.c_contiguous and d_valid.flags.c_contiguous):
        raise ValueError(
            "the GPU kernels need C-contiguous values and validity (cupy.ascontiguousarray)"
        )
    import cupy

    n_obs, n_bands, height, width = d_values.shape
    d_out, d_count, d_chosen = _outputs(cupy, d_values.shape)
    n_pixels = height * width
    if n_obs == 0 or n_pixels == 0:
        return _nodata(d_out, d_count, d_chosen)
    blocks, threads = launch_grid(n_pixels)
    _compiled(method)(
        (blocks,),
        (threads,),
        (
            d_values,
            d_valid,
            np.float64(q),
            np.int32(kind),
            np.int32(n_obs),
            np.int32(n_bands),
            np.int64(n_pixels),
            d_out,
            d_count,
            d_chosen,
        ),
    )
    return d_out, d_count, d_chosen


def pick_on_device(d_values, d_valid, percentile: float, index: str = "brightness"):
    """pick on cupy arrays already on the device (C-contiguous); returns cupy arrays."""
    kind = _check(d_values, d_valid, percentile, index)
    return _launch("pick", d_values, d_valid, percentile / 100.0, kind)


def medoid_on_device(d_values, d_valid):
    """medoid on cupy arrays already on the device (C-contiguous); returns cupy arrays."""
    _check(d_values, d_valid)
    return _launch("medoid", d_values, d_valid, 0.0, 0)


def in_row_bands(values: np.ndarray, valid: np.ndarray, free_bytes: int, run):
    """`run(values, valid) -> (out, count, chosen)` over bands of whole rows, each
    C-ordered and small enough that it and its outputs fit in DEVICE_MEMORY_SHARE
    of `free_bytes` (percentile.by_row_bands, with the third output)."""
    return by_row_bands(values, valid, free_bytes, run, _outputs(np, values.shape))


def _gpu(method: str, values: np.ndarray, valid: np.ndarray, percentile, index):
    import cupy

    def run(v, m):
        d_values, d_valid = cupy.asarray(v), cupy.asarray(m)
        if method == "pick":
            result = pick_on_device(d_values, d_valid, percentile, index)
        else:
            result = medoid_on_device(d_values, d_valid)
        return tuple(cupy.asnumpy(a) for a in result)

    free, _ = cupy.cuda.runtime.memGetInfo()
    try:
        return in_row_bands(values, valid, free, run)
    except cupy.cuda.memory.OutOfMemoryError as exc:
        log.warning("GPU out of memory (%s): %s on the CPU", exc, method)
        return _cpu(method, values, valid, percentile, index)


def _cpu(method: str, values, valid, percentile, index):
    if method == "pick":
        return pick_cpu(values, valid, percentile, index)
    return medoid_cpu(values, valid)


def pick_gpu(values: np.ndarray, valid: np.ndarray, percentile: float, index: str = "brightness"):
    """The GPU twin of pick_cpu (same result); numpy in, numpy out, in bands of rows
    when the stack is larger than the device's free memory allows."""
    _check(values, valid, percentile, index)
    return _gpu("pick", values, valid, percentile, index)


def medoid_gpu(values: np.ndarray, valid: np.ndarray):
    """The GPU twin of medoid_cpu (same result); numpy in, numpy out, in bands of rows
    when the stack is larger than the device's free memory allows."""
    _check(values, valid)
    return _gpu("medoid", values, valid, None, None)


def method_composite(method: str, values, valid, percentile: float | None, index="brightness"):
    """The composite by `method` ("pick" or "medoid"; medoid ignores percentile and
    index) on whichever side the stack lives: numpy arrays on the CPU kernel, cupy
    arrays on the GPU kernel. Returns numpy (out, count, chosen)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
    if isinstance(values, np.ndarray):
        return _cpu(method, values, valid, percentile, index)
    import cupy

    if method == "pick":
        _check(values, valid, percentile, index)
    else:
        _check(values, valid)
    d_values, d_valid = cupy.ascontiguousarray(values), cupy.ascontiguousarray(valid)
    try:
        if method == "pick":
            result = pick_on_device(d_values, d_valid, percentile, index)
        else:
            result = medoid_on_device(d_values, d_valid)
    except cupy.cuda.memory.OutOfMemoryError as exc:
        log.warning("GPU out of memory (%s): %s on the CPU", exc, method)
        return _cpu(method, cupy.asnumpy(values), cupy.asnumpy(valid), percentile, index)
    return tuple(cupy.asnumpy(a) for a in result)
