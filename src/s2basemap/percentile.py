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
FAST_OBSERVATIONS_GPU = 64  # validity fits one 64-bit register
SENTINEL = np.uint16(65535)


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


@numba.njit(cache=True)
def _ranks(count, q, lo, hi, gamma):
    for col in range(count.shape[0]):
        lo[col], hi[col], gamma[col] = _rank(max(count[col], 1), q)


@numba.njit(parallel=True, cache=True)
def _percentile_cpu(values, valid, q, keep, out, count):
    """Rows in parallel; within a row, every step runs across all columns (SIMD).

    Invalid observations become the sentinel 65535, which sorts last, and each
    column keeps only its `keep` smallest values, sorted, in a compare-exchange
    chain (min/max, no branches). A valid 65535 ties with the sentinel and so
    still lands on the right rank.
    """
    n_obs, n_bands, height, width = values.shape
    for row in numba.prange(height):
        n = np.zeros(width, dtype=np.int64)
        for i in range(n_obs):
            for col in range(width):
                n[col] += valid[i, row, col]
        lo = np.empty(width, dtype=np.int64)
        hi = np.empty(width, dtype=np.int64)
        gamma = np.empty(width, dtype=np.float64)
        _ranks(n, q, lo, hi, gamma)
        smallest = np.empty((keep, width), dtype=np.uint16)
        incoming = np.empty(width, dtype=np.uint16)
        for band in range(n_bands):
            smallest[:] = SENTINEL
            for i in range(n_obs):
                source = values[i, band, row]
                ok = valid[i, row]
                for col in range(width):
                    incoming[col] = source[col] if ok[col] else SENTINEL
                for j in range(keep):
                    kept = smallest[j]
                    for col in range(width):
                        a, x = kept[col], incoming[col]
                        kept[col] = min(a, x)
                        incoming[col] = max(a, x)
            for col in range(width):
                if n[col] == 0:
                    out[band, row, col] = 0
                else:
                    result = _lerp(
                        float(smallest[lo[col], col]), float(smallest[hi[col], col]), gamma[col]
                    )
                    out[band, row, col] = np.uint16(np.rint(result))
        for col in range(width):
            count[row, col] = n[col]


def kept_ranks(n_obs: int, percentile: float) -> int:
    """How many smallest values per pixel reach the percentile's upper neighbour."""
    return min(n_obs, int(np.floor(percentile / 100.0 * (n_obs - 1))) + 2) if n_obs else 0


def percentile_cpu(values: np.ndarray, valid: np.ndarray, percentile: float):
    """(N, B, H, W) uint16 values, (N, H, W) bool valid -> ((B, H, W) uint16, (H, W) uint16)."""
    _check(values, valid, percentile)
    out = np.empty(values.shape[1:], dtype=np.uint16)
    count = np.empty(values.shape[2:], dtype=np.uint16)
    if values.shape[0] == 0:
        out[:], count[:] = 0, 0
        return out, count
    _percentile_cpu(
        values, valid, percentile / 100.0, kept_ranks(values.shape[0], percentile), out, count
    )
    return out, count


def _check(values, valid, percentile) -> None:
    if values.dtype != np.uint16 or valid.dtype != np.bool_:
        raise TypeError(
            f"expected uint16 values and bool validity, got {values.dtype}, {valid.dtype}"
        )
    if values.ndim != 4 or valid.shape != (values.shape[0], *values.shape[2:]):
        raise ValueError(f"shape mismatch: values {values.shape}, valid {valid.shape}")
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile {percentile} is not within 0-100")


# Shared by both CUDA kernels: numpy's "linear" rank and interpolation, every
# step rounded on its own (the intrinsics keep the compiler from fusing a
# multiply-add, which would change the last bit).
CUDA_RANK = r"""
    double index = __dmul_rn((double)(n - 1), q);
    int lo, hi;
    double gamma = 0.0;
    if (index >= (double)(n - 1)) { lo = n - 1; hi = n - 1; }
    else if (index < 0.0) { lo = 0; hi = 0; }
    else { lo = (int)floor(index); hi = lo + 1; gamma = __dsub_rn(index, (double)lo); }
"""

CUDA_LERP = r"""
__device__ unsigned short lerp_numpy(unsigned short lower, unsigned short upper, double gamma)
{
    double a = (double)lower, c = (double)upper;
    double d = __dsub_rn(c, a);
    double r = gamma >= 0.5 ? __dsub_rn(c, __dmul_rn(d, __dsub_rn(1.0, gamma)))
                            : __dadd_rn(a, __dmul_rn(d, gamma));
    return (unsigned short)rint(r);
}
"""

CUDA_SOURCE = (
    CUDA_LERP
    + r"""
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
@RANK@
    for (int b = 0; b < n_bands; ++b) {
        const unsigned short* band = values + (long long)b * n_pixels;
        for (int k = 0; k < n; ++k) {
            unsigned short v = band[(long long)taken[k] * n_bands * n_pixels + p];
            int j = k;
            while (j > 0 && sample[j - 1] > v) { sample[j] = sample[j - 1]; --j; }
            sample[j] = v;
        }
        out[(long long)b * n_pixels + p] = lerp_numpy(sample[lo], sample[hi], gamma);
    }
}
"""
)


CUDA_FAST_SOURCE = (
    CUDA_LERP
    + r"""
// One thread per pixel: validity as a 64-bit mask, the KEEP smallest values of
// each band in registers (compare-exchange chain), numpy's linear rank.
extern "C" __global__
void percentile_fast(const unsigned short* __restrict__ values, const bool* __restrict__ valid,
                     const double q, const int n_obs, const int n_bands, const long long n_pixels,
                     unsigned short* __restrict__ out, unsigned short* __restrict__ count)
{
    long long p = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (p >= n_pixels) return;
    unsigned long long bits = 0ull;
    int n = 0;
    for (int i = 0; i < n_obs; ++i) {
        if (valid[(long long)i * n_pixels + p]) { bits |= 1ull << i; ++n; }
    }
    count[p] = (unsigned short)n;
    if (n == 0) {
        for (int b = 0; b < n_bands; ++b) out[(long long)b * n_pixels + p] = 0;
        return;
    }
@RANK@
    for (int b = 0; b < n_bands; ++b) {
        unsigned short kept[KEEP];
        #pragma unroll
        for (int j = 0; j < KEEP; ++j) kept[j] = 65535;
        for (int i = 0; i < n_obs; ++i) {
            unsigned short x = ((bits >> i) & 1ull)
                ? values[((long long)i * n_bands + b) * n_pixels + p] : (unsigned short)65535;
            #pragma unroll
            for (int j = 0; j < KEEP; ++j) {
                unsigned short a = kept[j];
                kept[j] = a < x ? a : x;
                x = a < x ? x : a;
            }
        }
        unsigned short a = 0, c = 0;
        #pragma unroll
        for (int j = 0; j < KEEP; ++j) {  // select by unrolled compare: kept stays in registers
            if (j == lo) a = kept[j];
            if (j == hi) c = kept[j];
        }
        out[(long long)b * n_pixels + p] = lerp_numpy(a, c, gamma);
    }
}
"""
)


CUDA_SOURCE = CUDA_SOURCE.replace("@RANK@", CUDA_RANK)
CUDA_FAST_SOURCE = CUDA_FAST_SOURCE.replace("@RANK@", CUDA_RANK)


def gpu_available() -> bool:
    """cupy importable and a CUDA device present."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 (ImportError, or CUDARuntimeError without a driver)
        return False


def kernel_source(n_obs: int, percentile: float) -> tuple[str, str]:
    """(CUDA source, kernel name) the device runs for a stack of `n_obs` observations:
    the register kernel up to 64, the general one up to MAX_OBSERVATIONS_GPU."""
    if n_obs <= FAST_OBSERVATIONS_GPU:
        return CUDA_FAST_SOURCE.replace(
            "KEEP", str(kept_ranks(n_obs, percentile))
        ), "percentile_fast"
    return CUDA_SOURCE.replace("MAX_OBS", str(MAX_OBSERVATIONS_GPU)), "percentile_kernel"


def launch_grid(n_pixels: int, threads: int = 128) -> tuple[int, int]:
    """(blocks, threads per block): one thread per pixel, the last block partly idle."""
    return (n_pixels + threads - 1) // threads, threads


@lru_cache(maxsize=16)
def _compiled(source: str, name: str):
    import cupy

    return cupy.RawKernel(source, name)


# Of the free device memory, the share one stack (with its outputs) may take; the
# rest is headroom for cupy's pool and other jobs sharing the device.
DEVICE_MEMORY_SHARE = 0.5


def percentile_gpu(values: np.ndarray, valid: np.ndarray, percentile: float):
    """The GPU twin of percentile_cpu; takes and returns numpy arrays.

    A stack larger than the free device memory goes in bands of rows. Beyond the
    GPU kernel's observations, or when the device runs out of memory anyway, the
    CPU kernel computes it, with a log line: the result is the same.
    """
    import cupy

    _check(values, valid, percentile)
    if values.shape[0] > MAX_OBSERVATIONS_GPU:
        log.info(
            "%d observations exceed the GPU kernel's %d: percentile on the CPU",
            values.shape[0],
            MAX_OBSERVATIONS_GPU,
        )
        return percentile_cpu(values, valid, percentile)
    free, _ = cupy.cuda.runtime.memGetInfo()
    try:
        return in_row_bands(values, valid, percentile, free, _on_device)
    except cupy.cuda.memory.OutOfMemoryError as exc:
        log.warning("GPU out of memory (%s): percentile on the CPU", exc)
        return percentile_cpu(values, valid, percentile)


def _on_device(values: np.ndarray, valid: np.ndarray, percentile: float):
    import cupy

    d_out, d_count = percentile_on_device(cupy.asarray(values), cupy.asarray(valid), percentile)
    return cupy.asnumpy(d_out), cupy.asnumpy(d_count)


def in_row_bands(values: np.ndarray, valid: np.ndarray, percentile: float, free_bytes: int, run):
    """`run(values, valid, percentile)` over bands of whole rows, each C-ordered and
    small enough that it and its outputs fit in DEVICE_MEMORY_SHARE of `free_bytes`."""
    n_bands, height, width = values.shape[1:]
    outputs = (
        np.empty((n_bands, height, width), dtype=np.uint16),
        np.empty((height, width), dtype=np.uint16),
    )
    return by_row_bands(values, valid, free_bytes, lambda v, m: run(v, m, percentile), outputs)


def by_row_bands(values: np.ndarray, valid: np.ndarray, free_bytes: int, run, outputs: tuple):
    """Fill `outputs` (arrays whose last two axes are the stack's rows and columns) with
    `run(values, valid)` over bands of whole rows, each C-ordered and small enough that
    it and its outputs fit in DEVICE_MEMORY_SHARE of `free_bytes`."""
    n_obs, n_bands, height, width = values.shape
    output_bytes = sum(o.itemsize * o.size // max(height * width, 1) for o in outputs)
    row_bytes = width * (n_obs * n_bands * 2 + n_obs + output_bytes)
    rows = max(1, min(height, int(free_bytes * DEVICE_MEMORY_SHARE) // max(row_bytes, 1)))
    if rows < height:
        log.info(
            "stack of %.1f GB in bands of %d rows (%.1f GB free on the device)",
            row_bytes * height / 1e9,
            rows,
            free_bytes / 1e9,
        )
    for top in range(0, height, rows):
        band = slice(top, min(top + rows, height))
        results = run(
            np.ascontiguousarray(values[:, :, band]), np.ascontiguousarray(valid[:, band])
        )
        for output, result in zip(outputs, results, strict=True):
            output[..., band, :] = result
    return outputs


def percentile_on_device(d_values, d_valid, percentile: float):
    """The GPU kernels on cupy arrays already on the device (for timing, and chaining).

    The kernels index C-ordered arrays and hold at most MAX_OBSERVATIONS_GPU
    observations per pixel, so anything else is refused here rather than read wrongly.
    """
    _check(d_values, d_valid, percentile)
    n_obs, n_bands, height, width = d_values.shape
    if n_obs > MAX_OBSERVATIONS_GPU:
        raise ValueError(f"{n_obs} observations exceed the GPU kernel's {MAX_OBSERVATIONS_GPU}")
    if not (d_values.flags.c_contiguous and d_valid.flags.c_contiguous):
        raise ValueError(
            "the GPU kernels need C-contiguous values and validity (cupy.ascontiguousarray)"
        )
    import cupy

    n_pixels = height * width
    d_out = cupy.empty((n_bands, height, width), dtype=cupy.uint16)
    d_count = cupy.empty((height, width), dtype=cupy.uint16)
    if n_obs == 0:
        d_out[:], d_count[:] = 0, 0
        return d_out, d_count
    blocks, threads = launch_grid(n_pixels)
    kernel = _compiled(*kernel_source(n_obs, percentile))
    kernel(
        (blocks,),
        (threads,),
        (
            d_values,
            d_valid,
            np.float64(percentile / 100.0),
            np.int32(n_obs),
            np.int32(n_bands),
            np.int64(n_pixels),
            d_out,
            d_count,
        ),
    )
    return d_out, d_count


def resolve_backend(backend: str) -> str:
    """ "gpu" when asked for, or when "auto" and a GPU is available; else "cpu"."""
    if backend == "gpu" or (backend == "auto" and gpu_available()):
        return "gpu"
    return "cpu"


def percentile_composite(values, valid, percentile: float):
    """The composite on whichever side the stack lives: numpy arrays on the CPU kernel,
    cupy arrays on the GPU kernel. Returns numpy arrays."""
    if isinstance(values, np.ndarray):
        return percentile_cpu(values, valid, percentile)
    import cupy

    _check(values, valid, percentile)
    if values.shape[0] > MAX_OBSERVATIONS_GPU:
        log.info(
            "%d observations exceed the GPU kernel's %d: percentile on the CPU",
            values.shape[0],
            MAX_OBSERVATIONS_GPU,
        )
        return percentile_cpu(cupy.asnumpy(values), cupy.asnumpy(valid), percentile)
    try:
        d_out, d_count = percentile_on_device(
            cupy.ascontiguousarray(values), cupy.ascontiguousarray(valid), percentile
        )
    except cupy.cuda.memory.OutOfMemoryError as exc:
        log.warning("GPU out of memory (%s): percentile on the CPU", exc)
        return percentile_cpu(cupy.asnumpy(values), cupy.asnumpy(valid), percentile)
    return cupy.asnumpy(d_out), cupy.asnumpy(d_count)
