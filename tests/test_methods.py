"""s2basemap.methods: the pick and medoid kernels (CPU, the CUDA sources run on the CPU,
GPU) against a plain-Python reference written from the definitions."""

from __future__ import annotations

import math
import shutil
import subprocess
from fractions import Fraction
from functools import cache
from itertools import pairwise

import numpy as np
import pytest

from s2basemap.methods import (
    CUDA_KERNELS,
    MEDOID_CUDA_SOURCE,
    PICK_CUDA_SOURCE,
    PICK_INDEXES,
    _row_keys,
    in_row_bands,
    kept_ranks,
    medoid_cpu,
    medoid_gpu,
    medoid_on_device,
    method_composite,
    nearest_rank,
    pick_cpu,
    pick_gpu,
    pick_on_device,
)
from s2basemap.percentile import gpu_available, launch_grid

BANDS = ("red", "green", "blue", "nir")
N_OBS = (0, 1, 2, 9, 40, 64, 130)
PERCENTILES = (0, 25, 50, 50.5, 100)


# -- the reference: one pixel at a time, Python ints and floats -------------------------


def reference_key(obs: tuple[int, ...], index: str):
    red, green, blue, nir = obs[:4]
    if index == "brightness":
        return red + green + blue
    if index == "ndvi-inverse":
        # int / int in Python is the correctly rounded quotient, as float(a) / float(b) here
        return (red - nir) / (red + nir) if red + nir > 0 else 0.0
    return obs[BANDS.index(index)]


def reference_pick(pixel: dict[int, tuple[int, ...]], percentile: float, index: str) -> int:
    order = sorted(pixel, key=lambda i: (reference_key(pixel[i], index), i))
    n = len(order)
    rank = math.ceil(percentile / 100 * n)
    return order[min(max(rank, 1), n) - 1]


def reference_medoid(pixel: dict[int, tuple[int, ...]]) -> int:
    best, best_cost = -1, math.inf
    for i in sorted(pixel):
        cost = 0.0
        for j in sorted(pixel):
            cost += math.sqrt(sum((a - b) ** 2 for a, b in zip(pixel[i], pixel[j], strict=True)))
        if cost < best_cost:  # strictly: a tie stays with the lower i
            best, best_cost = i, cost
    return best


def reference(values, valid, choose):
    """(out, count, chosen) with `choose(pixel)` picking among {i: bands} of the valid."""
    n_obs, n_bands, height, width = values.shape
    data, mask = values.tolist(), valid.tolist()
    out = np.zeros((n_bands, height, width), dtype=np.uint16)
    count = np.zeros((height, width), dtype=np.uint16)
    chosen = np.full((height, width), -1, dtype=np.int16)
    for row in range(height):
        for col in range(width):
            pixel = {
                i: tuple(data[i][b][row][col] for b in range(n_bands))
                for i in range(n_obs)
                if mask[i][row][col]
            }
            count[row, col] = len(pixel)
            if pixel:
                chosen[row, col] = i = choose(pixel)
                out[:, row, col] = pixel[i]
    return out, count, chosen


# -- the stacks: random, with the edge cases planted -------------------------------------


def stack(n_obs: int, shape=(12, 23), invalid=0.4, seed=0):
    """Random values with row 0 of planted cases (needs width >= 10), row 1 of exact
    duplicates, row 2 of values in 0-3 (ties everywhere), row 3 over the full range."""
    rng = np.random.default_rng(seed + n_obs)
    values = rng.integers(1, 12000, (n_obs, 4, *shape)).astype(np.uint16)
    valid = rng.random((n_obs, *shape)) >= invalid
    if n_obs == 0:
        return values, valid
    i = np.arange(n_obs)
    valid[:, 0, 0] = False  # no valid observation
    valid[:, 0, 1] = i == n_obs // 2  # one
    valid[:, 0, 2] = (i == 0) | (i == n_obs - 1)  # two (one, when N is 1)
    valid[:, 0, 3] = True  # all valid and identical: ties in every key and cost
    values[:, :, 0, 3] = values[0, :, 0, 3]
    # equal brightness (and NIR) from different values: R, G, B a rotation of three
    triple = np.array([700, 20, 5000], np.uint16)
    for k in range(n_obs):
        values[k, :3, 0, 4] = np.roll(triple, k % 3)
    values[:, 3, 0, 4] = 900
    # equal ndvi-inverse from different values: R / NIR = 3 / 5
    scale = rng.integers(1, 13000, n_obs).astype(np.uint16)
    values[:, 0, 0, 5], values[:, 3, 0, 5] = 3 * scale, 5 * scale
    # R + NIR == 0 (key 0.0) for even i; R == NIR (also 0.0) for every third
    values[::2, 0, 0, 6], values[::2, 3, 0, 6] = 0, 0
    values[::3, 3, 0, 6] = values[::3, 0, 0, 6]
    # only 0 and 65535
    values[:, :, 0, 7] = rng.choice(np.array([0, 65535], np.uint16), (n_obs, 4))
    # two vectors alternating, all valid: medoid costs tie when the counts are equal
    valid[:, 0, 8] = True
    values[:, :, 0, 8] = np.where((i % 2 == 0)[:, None], [10, 20, 30, 40], [65535, 0, 65535, 0])
    # ndvi-inverse 0.5 + 1 / (2 (4 NIR + 1)): distinct in float64, equal in float32
    nir = rng.integers(21800, 21845, n_obs)
    values[:, 0, 0, 9], values[:, 3, 0, 9] = 3 * nir + 1, nir
    values[:, :, 1, :] = values[0, :, 1, :]
    values[:, :, 2, :] = rng.integers(0, 4, values[:, :, 2, :].shape)
    values[:, :, 3, :] = rng.integers(0, 65536, values[:, :, 3, :].shape)
    return values, valid


def shape_for(n_obs: int) -> tuple[int, int]:
    """Small enough for the reference, above one 128-thread block where it is cheap."""
    return (12, 23) if n_obs <= 40 else (8, 17) if n_obs <= 64 else (5, 11)


@cache
def case(n_obs: int, invalid: float = 0.4):
    values, valid = stack(n_obs, shape_for(n_obs), invalid)  # shared: the tests only read it
    if invalid == 1.0:
        valid[:] = False  # the planted pixels too
    return values, valid


@cache
def expected(n_obs: int, percentile=None, index=None, invalid: float = 0.4):
    values, valid = case(n_obs, invalid)
    if index is None:
        return reference(values, valid, reference_medoid)
    return reference(values, valid, lambda pixel: reference_pick(pixel, percentile, index))


def assert_same(result, wanted, what=""):
    out, count, chosen = result
    assert out.dtype == np.uint16 and count.dtype == np.uint16 and chosen.dtype == np.int16
    np.testing.assert_array_equal(count, wanted[1], err_msg=f"count {what}")
    np.testing.assert_array_equal(chosen, wanted[2], err_msg=f"chosen {what}")
    np.testing.assert_array_equal(out, wanted[0], err_msg=f"out {what}")


def assert_planted(values, result):
    """The planted cases came out as designed (a check on the stack, not the kernel)."""
    out, count, chosen = result
    n_obs = values.shape[0]
    assert (count[0, 0], chosen[0, 0]) == (0, -1) and (out[:, 0, 0] == 0).all()
    if n_obs:
        assert (count[0, 1], chosen[0, 1]) == (1, n_obs // 2)
        assert (out[:, 0, 1] == values[n_obs // 2, :, 0, 1]).all()


# -- the CPU kernels ---------------------------------------------------------------------


@pytest.mark.parametrize("percentile", PERCENTILES)
@pytest.mark.parametrize("n_obs", N_OBS)
def test_pick_cpu_equals_the_reference(n_obs, percentile):
    values, valid = case(n_obs)
    for index in PICK_INDEXES:
        result = pick_cpu(values, valid, percentile, index)
        assert_same(result, expected(n_obs, percentile, index), f"{index} at {percentile}")
        assert_planted(values, result)


@pytest.mark.parametrize("n_obs", N_OBS)
def test_medoid_cpu_equals_the_reference(n_obs):
    values, valid = case(n_obs)
    result = medoid_cpu(values, valid)
    assert_same(result, expected(n_obs))
    assert_planted(values, result)
    if n_obs:
        assert result[2][0, 3] == 0  # identical observations: the first


@pytest.mark.parametrize("invalid", [0.0, 1.0])
def test_all_valid_and_none_valid(invalid):
    values, valid = case(40, invalid)
    for index in ("brightness", "ndvi-inverse", "blue"):
        assert_same(pick_cpu(values, valid, 33, index), expected(40, 33, index, invalid))
    assert_same(medoid_cpu(values, valid), expected(40, invalid=invalid))


def test_no_observations_is_all_nodata():
    values, valid = np.zeros((0, 4, 3, 5), np.uint16), np.zeros((0, 3, 5), bool)
    for out, count, chosen in (pick_cpu(values, valid, 50, "nir"), medoid_cpu(values, valid)):
        assert out.shape == (4, 3, 5) and (out == 0).all()
        assert (count == 0).all() and (chosen == -1).all()


def test_ties_go_to_the_lower_index():
    """Four identical observations, the second invalid: every rank keeps acquisition
    order, and the medoid is the first valid."""
    values = np.full((4, 4, 1, 1), 123, np.uint16)
    valid = np.array([True, False, True, True]).reshape(4, 1, 1)
    assert [int(pick_cpu(values, valid, p)[2][0, 0]) for p in (0, 33, 34, 100)] == [0, 0, 2, 3]
    assert medoid_cpu(values, valid[[1, 0, 2, 3]])[2][0, 0] == 1


def mirrored_pixels(n_pixels: int, pairs: int = 3, seed: int = 5):
    """Pixels where observations A and B are mirror images across a plane that also
    mirrors `pairs` pairs of far-away others onto each other: A's and B's distances
    are the same numbers, summed in a different order, so their float64 costs differ
    only by rounding, and the defined order (ascending j) decides. Only pixels where
    it does (the costs differ, A or B wins, and summing in descending j would choose
    the other) are kept. All observations valid."""
    rng = np.random.default_rng(seed)
    n_obs = 2 + 2 * pairs
    found = []
    while len(found) < n_pixels:
        centre = rng.integers(20000, 45000, 4)
        a, b = centre.copy(), centre.copy()
        step = rng.integers(1, 40)
        a[0], b[0] = centre[0] - step, centre[0] + step
        points = [a, b]
        for _ in range(pairs):
            c = centre + rng.integers(-9000, 9000, 4)
            mirror = c.copy()
            mirror[0] = 2 * centre[0] - c[0]
            points += [c, mirror]
        order = rng.permutation(n_obs)
        pixel = {int(k): tuple(int(x) for x in points[order[k]]) for k in range(n_obs)}

        def costs(pixel, reverse=False):
            return {
                i: sum_in_order(
                    [
                        math.sqrt(
                            sum((x - y) ** 2 for x, y in zip(pixel[i], pixel[j], strict=True))
                        )
                        for j in sorted(pixel, reverse=reverse)
                    ]
                )
                for i in pixel
            }

        forward, backward = costs(pixel), costs(pixel, reverse=True)
        first = min(forward, key=lambda i: (forward[i], i))
        other = min(backward, key=lambda i: (backward[i], i))
        ia, ib = int(np.argmax(order == 0)), int(np.argmax(order == 1))
        if forward[ia] != forward[ib] and {first, other} == {ia, ib}:
            found.append(pixel)
    values = np.zeros((n_obs, 4, 1, n_pixels), np.uint16)
    for col, pixel in enumerate(found):
        for i, obs in pixel.items():
            values[i, :, 0, col] = obs
    return values, np.ones((n_obs, 1, n_pixels), bool)


def sum_in_order(terms):
    total = 0.0
    for term in terms:
        total += term
    return total


def test_medoid_costs_are_summed_in_ascending_j(host_methods):
    """Near-ties that only the defined summation order decides: CPU and the CUDA source."""
    values, valid = mirrored_pixels(24)
    wanted = reference(values, valid, reference_medoid)
    assert_same(medoid_cpu(values, valid), wanted)
    assert_same(host_methods("medoid", values, valid), wanted)


def test_ndvi_inverse_key_keeps_the_exact_order_of_the_ratios():
    """The CPU kernel orders ndvi-inverse by an integer from the float64's bits: it must
    order every pair of ratios (R - NIR) / (R + NIR) like the exact fractions, equal
    only when equal. The closest ratios come from the largest values: all pairs near
    65535, near R = 3 NIR (the key 0.5, a binade boundary) and near 0."""
    near_top = np.arange(65490, 65536)
    pairs = [(r, n) for r in near_top for n in near_top]
    pairs += [(r, n) for r in range(65500, 65536) for n in range(21820, 21850)]
    pairs += [(r, n) for r in range(30) for n in range(30)]
    pairs += [(65535, 1), (65534, 1), (1, 65535), (1, 65534), (65535, 0), (0, 65535)]
    red, nir = np.array(pairs, np.uint16).T
    values = np.zeros((1, 4, 1, len(pairs)), np.uint16)
    values[0, 0, 0], values[0, 3, 0] = red, nir
    key = np.empty(len(pairs), np.int64)
    ratio = np.empty(len(pairs), np.float64)
    _row_keys(values, 0, 0, 1, key, ratio, ratio.view(np.int64))
    exact = [Fraction(int(r) - int(n), int(r) + int(n)) if r + n else Fraction(0) for r, n in pairs]
    order = sorted(range(len(pairs)), key=exact.__getitem__)
    for a, b in pairwise(order):
        if exact[a] == exact[b]:
            assert key[a] == key[b], (pairs[a], pairs[b])
        else:
            assert key[a] < key[b], (pairs[a], pairs[b])


def test_the_chain_keeps_every_rank_it_may_be_asked_for():
    for n_obs in (1, 2, 3, 7, 40, 129):
        for percentile in (0, 0.1, 25, 49.9, 50, 50.5, 75, 99.9, 100):
            q = percentile / 100.0
            keep, reverse = kept_ranks(n_obs, q)
            for n in range(1, n_obs + 1):
                k = nearest_rank(n, q)
                assert (n - 1 - k if reverse else k) < keep
            assert keep <= (n_obs + 1) // 2 + 1


def test_method_composite_on_numpy_runs_the_cpu_kernels():
    values, valid = case(9)
    assert_same(method_composite("pick", values, valid, 25, "green"), expected(9, 25, "green"))
    assert_same(method_composite("medoid", values, valid, None), expected(9))


# -- validation --------------------------------------------------------------------------


def test_inputs_are_validated():
    values, valid = case(9)
    with pytest.raises(TypeError):
        pick_cpu(values.astype(np.int32), valid, 25)
    with pytest.raises(TypeError):
        medoid_cpu(values, valid.astype(np.uint8))
    with pytest.raises(ValueError, match="shape mismatch"):
        medoid_cpu(values, valid[:, :-1])
    with pytest.raises(ValueError, match="shape mismatch"):
        pick_cpu(values[0], valid, 25)
    for percentile in (-1, 100.5, float("nan")):
        with pytest.raises(ValueError, match="within 0-100"):
            pick_cpu(values, valid, percentile)
    with pytest.raises(
        ValueError, match="expected one of brightness, ndvi-inverse, red, green, blue, nir"
    ):
        pick_cpu(values, valid, 25, "swir")
    with pytest.raises(ValueError, match="unknown pick index"):
        pick_cpu(values, valid, 25, 2)
    with pytest.raises(ValueError, match="Red, Green, Blue, NIR"):
        pick_cpu(np.ascontiguousarray(values[:, :3]), valid, 25)
    with pytest.raises(ValueError, match="pick needs a percentile"):
        method_composite("pick", values, valid, None)
    with pytest.raises(ValueError, match="unknown method 'mean'"):
        method_composite("mean", values, valid, 25)
    many = np.zeros((32768, 4, 1, 1), np.uint16)
    with pytest.raises(ValueError, match="32768 observations exceed 32767"):
        medoid_cpu(many, np.zeros((32768, 1, 1), bool))


def test_the_device_entries_refuse_what_the_kernels_would_read_wrongly():
    values, valid = case(9)
    with pytest.raises(ValueError, match="C-contiguous"):
        pick_on_device(np.asfortranarray(values), valid, 25)
    with pytest.raises(ValueError, match="C-contiguous"):
        medoid_on_device(values, np.asfortranarray(valid))
    with pytest.raises(ValueError, match="unknown pick index"):
        pick_on_device(values, valid, 25, "ndvi")


# -- the CUDA sources, compiled for the CPU (tests/cudahost.py) -----------------------


@pytest.fixture(scope="module")
def host_methods(tmp_path_factory):
    """run(method, values, valid, percentile, index): the exact CUDA source of the
    method on the glue's launch grid, compiled by g++ once per method."""
    import cudahost

    if cudahost.compiler() is None:
        pytest.skip("g++ not installed")
    workdir = tmp_path_factory.mktemp("methods-on-cpu")
    exes = {m: cudahost.build_method(*CUDA_KERNELS[m], workdir) for m in CUDA_KERNELS}

    def raw(method, values, valid, q, kind):
        grid = launch_grid(values.shape[2] * values.shape[3])
        return cudahost.launch_method(exes[method], values, valid, q, kind, workdir, grid)

    def run(method, values, valid, percentile=0, index="brightness"):
        return raw(method, values, valid, percentile / 100.0, PICK_INDEXES[index])

    run.raw = raw
    return run


@pytest.mark.parametrize("n_obs", [n for n in N_OBS if n])  # N = 0 never reaches the kernel
def test_cuda_sources_run_on_the_cpu_exactly_like_the_reference(host_methods, n_obs):
    values, valid = case(n_obs)
    for percentile in PERCENTILES:
        for index in PICK_INDEXES:
            assert_same(
                host_methods("pick", values, valid, percentile, index),
                expected(n_obs, percentile, index),
                f"{index} at {percentile}",
            )
    assert_same(host_methods("medoid", values, valid), expected(n_obs))


@pytest.mark.parametrize("invalid", [0.0, 1.0])
def test_cuda_sources_with_all_and_none_valid(host_methods, invalid):
    values, valid = case(40, invalid)
    for index in ("brightness", "ndvi-inverse", "blue"):
        assert_same(
            host_methods("pick", values, valid, 33, index), expected(40, 33, index, invalid)
        )
    assert_same(host_methods("medoid", values, valid), expected(40, invalid=invalid))


def test_the_gpu_glue_hands_the_kernels_c_ordered_row_bands(host_methods):
    """F-ordered input and a device too small for the stack: the glue's bands of rows,
    run by the real kernel sources, give the whole stack's exact result."""
    values, valid = case(9)
    f_values, f_valid = np.asfortranarray(values), np.asfortranarray(valid)
    row_bytes = 23 * (9 * 4 * 2 + 9 + 4 * 2 + 2 + 2)
    for method, index in (("pick", "ndvi-inverse"), ("medoid", None)):
        bands = []

        def run(v, m, method=method, index=index, bands=bands):
            assert v.flags.c_contiguous and m.flags.c_contiguous
            bands.append(v.shape[2])
            return host_methods(method, v, m, 25, index or "brightness")

        result = in_row_bands(f_values, f_valid, free_bytes=2 * 5 * row_bytes, run=run)
        assert bands == [5, 5, 2]  # half the free memory: 5 rows at a time
        assert_same(result, expected(9, 25, index) if index else expected(9))


class FakeCupy:
    """Just enough of cupy for the GPU glue, its RawKernel the exact CUDA source run by
    the host harness: the glue's launch (grid, argument order, outputs, bands of rows,
    the fallback when the device runs out of memory) without a device."""

    uint16, int16 = np.uint16, np.int16
    empty, asnumpy = staticmethod(np.empty), staticmethod(np.asarray)
    asarray, ascontiguousarray = staticmethod(np.asarray), staticmethod(np.ascontiguousarray)

    class OutOfMemoryError(Exception):
        pass

    def __init__(self, host_methods, free_bytes, launches, fail=False):
        cuda = type("cuda", (), {})()
        cuda.runtime = type("runtime", (), {"memGetInfo": staticmethod(lambda: (free_bytes, 0))})
        cuda.memory = type("memory", (), {"OutOfMemoryError": self.OutOfMemoryError})
        self.cuda = cuda
        self.host_methods, self.launches, self.fail = host_methods, launches, fail

    def RawKernel(self, source, name):  # cupy's name
        method = {v: k for k, v in CUDA_KERNELS.items()}[(source, name)]

        def launch(grid, block, args):
            if self.fail:
                raise self.OutOfMemoryError("fake")
            values, valid, q, kind, n_obs, n_bands, n_pixels, out, count, chosen = args
            assert (values.dtype, valid.dtype, q.dtype, kind.dtype) == (
                np.uint16,
                np.bool_,
                np.float64,
                np.int32,
            )
            assert (n_obs, n_bands, n_pixels) == (
                values.shape[0],
                values.shape[1],
                values.shape[2] * values.shape[3],
            )
            assert (n_obs.dtype, n_bands.dtype, n_pixels.dtype) == (np.int32, np.int32, np.int64)
            assert (grid, block) == tuple((x,) for x in launch_grid(int(n_pixels)))
            self.launches.append((method, values.shape[2]))
            result = self.host_methods.raw(method, values, valid, float(q), int(kind))
            out[:], count[:], chosen[:] = result

        return launch


@pytest.mark.parametrize("fail", [False, True])
def test_the_gpu_glue_launches_the_kernels_as_they_are_declared(host_methods, monkeypatch, fail):
    import sys

    from s2basemap import methods

    values, valid = case(9)
    row_bytes = 23 * (9 * 4 * 2 + 9 + 4 * 2 + 2 + 2)
    launches = []
    monkeypatch.setitem(
        sys.modules, "cupy", FakeCupy(host_methods, 2 * 5 * row_bytes, launches, fail)
    )
    methods._compiled.cache_clear()
    try:
        assert_same(
            pick_gpu(values, valid, 50.5, "ndvi-inverse"), expected(9, 50.5, "ndvi-inverse")
        )
        assert_same(medoid_gpu(values, valid), expected(9))
        empty = np.zeros((0, 4, 3, 5), np.uint16), np.zeros((0, 3, 5), bool)
        for out, count, chosen in (pick_gpu(*empty, 50), medoid_gpu(*empty)):
            assert (out == 0).all() and (count == 0).all() and (chosen == -1).all()
    finally:
        methods._compiled.cache_clear()
    if not fail:
        assert launches == [("pick", 5), ("pick", 5), ("pick", 2)] + [("medoid", 5)] * 2 + [
            ("medoid", 2)
        ]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
@pytest.mark.parametrize("method", sorted(CUDA_KERNELS))
def test_cuda_sources_compile(tmp_path, method):
    """Without a GPU the kernels cannot run on one, but nvcc can still reject a source."""
    source = tmp_path / "kernel.cu"
    source.write_text({"pick": PICK_CUDA_SOURCE, "medoid": MEDOID_CUDA_SOURCE}[method])
    result = subprocess.run(
        ["nvcc", "-c", str(source), "-o", str(tmp_path / "kernel.o")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# -- the GPU -----------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs cupy and a CUDA device")
@pytest.mark.parametrize("n_obs", [0, 1, 2, 40, 64, 130])
def test_gpu_kernels_are_identical_to_cpu(n_obs):
    values, valid = stack(n_obs, shape=(300, 257))
    for percentile in PERCENTILES:
        for index in PICK_INDEXES:
            gpu = pick_gpu(values, valid, percentile, index)
            assert_same(gpu, pick_cpu(values, valid, percentile, index), f"{index} {percentile}")
    assert_same(medoid_gpu(values, valid), medoid_cpu(values, valid))
    if n_obs == 40:
        small, small_valid = case(40)
        assert_same(
            pick_gpu(small, small_valid, 25, "ndvi-inverse"), expected(40, 25, "ndvi-inverse")
        )
        assert_same(medoid_gpu(small, small_valid), expected(40))


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs cupy and a CUDA device")
def test_method_composite_on_cupy_runs_the_gpu_kernels():
    import cupy

    values, valid = case(40)
    d_values, d_valid = cupy.asarray(np.asfortranarray(values)), cupy.asarray(valid)
    assert_same(method_composite("pick", d_values, d_valid, 50.5, "nir"), expected(40, 50.5, "nir"))
    assert_same(method_composite("medoid", d_values, d_valid, None), expected(40))
