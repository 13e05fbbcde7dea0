"""Per-pixel percentile of the valid observations, identical to numpy's default.

For n valid values sorted as v[0..n-1] and q = percentile / 100, numpy's
"linear" method computes, in float64 and in this order:

    i = (n - 1) * q
    i >= n - 1:  v[n-1]             i < 0:  v[0]
    else:        lo = floor(i), g = i - lo, a = v[lo], b = v[lo+1], d = b - a
                 g >= 0.5:  b - d * (1 - g)       else:  a + d * g

Both kernels (numba on the CPU, a CUDA kernel through cupy on the GPU) repeat
exactly these operations (the CUDA one with round-to-nearest intrinsics so the
compiler cannot fuse a multiply-add), then round half to even into uint16. The
rank and weight depend only on n, so they are computed once per pixel and shared
by the bands. Pixels without a valid observation get 0 (nodata).
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numba
import numpy as np

log = logging.getLogger(__name__)

MAX_OBSERVATIONS_GPU = 512


@numba.njit(cache=True, inline="always")
def _rank(n: int, q: float):
    """numpy's virtual index for n values: (lo, hi, gamma)."""
    index = (n - 1) * q
    if index >= n - 1:
        return n - 1, n - 1, 0.0
    if index < 0:
        return 0, 0, 0.0
    lo = int(np.floor(index))
    return lo, lo + 1, index - lo


@numba.njit(cache=True, inline="always")
def _lerp(a: float, b: float, gamma: float) -> float:
    d = b - a
    if gamma >= 0.5:
        return b - d * (1.0 - gamma)
    return a + d * gamma


@numba.njit(parallel=True, cache=True)
def _percentile_cpu(values, valid, q, out, count):
    n_obs, n_bands, height, width = values.shape
    for row in numba.prange(height):
        taken = np.empty(n_obs, dtype=np.int64)
        sample = np.empty(n_obs, dtype=np.uint16)
        for col in range(width):
            n = 0
            for i in range(n_obs):
                if valid[i, row, col]:
                    taken[n] = i
                    n += 1
            count[row, col] = n
            if n == 0:
                for band in range(n_bands):
                    out[band, row, col] = 0
                continue
            lo, hi, gamma = _rank(n, q)
            for band in range(n_bands):
                for k in range(n):  # insertion sort: n is tens, not thousands
                    value = values[taken[k], band, row, col]
                    j = k
                    while j > 0 and sample[j - 1] > value:
                        sample[j] = sample[j - 1]
                        j -= 1
                    sample[j] = value
                result = _lerp(float(sample[lo]), float(sample[hi]), gamma)
                out[band, row, col] = np.uint16(np.rint(result))


def percentile_cpu(values: np.ndarray, valid: np.ndarray, percentile: float):
    """(N, B, H, W) uint16 values, (N, H, W) bool valid -> ((B, H, W) uint16, (H, W) uint16)."""
    _check(values, valid, percentile)
    out = np.empty(values.shape[1:], dtype=np.uint16)
    count = np.empty(values.shape[2:], dtype=np.uint16)
    _percentile_cpu(values, valid, percentile / 100.0, out, count)
    return out, count


def _check(values, valid, percentile) -> None:
    if values.dtype != np.uint16 or valid.dtype != np.bool_:
        raise TypeError(f"expected uint16 values and bool validity, got {values.dtype}, {valid.dtype}")
    if values.ndim != 4 or valid.shape != (values.shape[0], *values.shape[2:]):
        raise ValueError(f"shape mismatch: values {values.shape}, valid {valid.shape}")
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile {percentile} is not within 0-100")


CUDA_SOURCE = r"""
extern "C" __global__
void percentile_kernel(const unsigned short* values, const bool* valid, const double q,
                       const int n_obs, const int n_bands, const long long n_pixels,
                       unsigned short* out, unsigned short* count)
{
    long long p = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (p >= n_pixels) return;
    unsigned short sample[MAX_OBS];
    int taken[MAX_OBS];
    int n = 0;
    for (int i = 0; i < n_obs; ++i) {
        if (valid[(long long)i * n_pixels + p]) taken[n++] = i;
    }
    count[p] = (unsigned short)n;
    if (n == 0) {
        for (int b = 0; b < n_bands; ++b) out[(long long)b * n_pixels + p] = 0;
        return;
    }
    // numpy's "linear" virtual index: (n - 1) * q
    double index = __dmul_rn((double)(n - 1), q);
    int lo, hi;
    double gamma = 0.0;
    if (index >= (double)(n - 1)) { lo = n - 1; hi = n - 1; }
    else if (index < 0.0) { lo = 0; hi = 0; }
    else { lo = (int)floor(index); hi = lo + 1; gamma = __dsub_rn(index, (double)lo); }
    for (int b = 0; b < n_bands; ++b) {
        const unsigned short* band = values + (long long)b * n_pixels;
        for (int k = 0; k < n; ++k) {
            unsigned short v = band[(long long)taken[k] * n_bands * n_pixels + p];
            int j = k;
            while (j > 0 && sample[j - 1] > v) { sample[j] = sample[j - 1]; --j; }
            sample[j] = v;
        }
        double a = (double)sample[lo], c = (double)sample[hi];
        double d = __dsub_rn(c, a);
        double r = gamma >= 0.5 ? __dsub_rn(c, __dmul_rn(d, __dsub_rn(1.0, gamma)))
                                : __dadd_rn(a, __dmul_rn(d, gamma));
        out[(long long)b * n_pixels + p] = (unsigned short)rint(r);
    }
}
"""


def gpu_available() -> bool:
    """cupy importable and a CUDA device present."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, or CUDARuntimeError without a driver
        return False


@lru_cache(maxsize=1)
def _gpu_kernel():
    import cupy

    return cupy.RawKernel(CUDA_SOURCE.replace("MAX_OBS", str(MAX_OBSERVATIONS_GPU)),
                          "percentile_kernel")


def percentile_gpu(values: np.ndarray, valid: np.ndarray, percentile: float):
    """The GPU twin of percentile_cpu; takes and returns numpy arrays."""
    import cupy

    _check(values, valid, percentile)
    n_obs, n_bands, height, width = values.shape
    if n_obs > MAX_OBSERVATIONS_GPU:
        raise ValueError(f"{n_obs} observations exceed the GPU kernel's {MAX_OBSERVATIONS_GPU}")
    n_pixels = height * width
    d_values, d_valid = cupy.asarray(values), cupy.asarray(valid)
    d_out = cupy.empty((n_bands, height, width), dtype=cupy.uint16)
    d_count = cupy.empty((height, width), dtype=cupy.uint16)
    threads = 128
    blocks = (n_pixels + threads - 1) // threads
    _gpu_kernel()((blocks,), (threads,), (d_values, d_valid, np.float64(percentile / 100.0),
                                          np.int32(n_obs), np.int32(n_bands), np.int64(n_pixels),
                                          d_out, d_count))
    return cupy.asnumpy(d_out), cupy.asnumpy(d_count)


def percentile_composite(values: np.ndarray, valid: np.ndarray, percentile: float,
                         backend: str = "auto"):
    """Dispatch to the GPU when asked for or available, else the CPU kernel."""
    if backend == "gpu" or (backend == "auto" and gpu_available()):
        return percentile_gpu(values, valid, percentile), "gpu"
    return percentile_cpu(values, valid, percentile), "cpu"
