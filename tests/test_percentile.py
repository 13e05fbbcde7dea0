"""s2basemap.percentile: the CPU and GPU kernels (and the CUDA source on the CPU), against numpy."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from s2basemap.percentile import (
    CUDA_FAST_SOURCE,
    CUDA_SOURCE,
    MAX_OBSERVATIONS_GPU,
    gpu_available,
    in_row_bands,
    kernel_source,
    launch_grid,
    percentile_cpu,
    percentile_gpu,
)


def numpy_reference(values, valid, q):
    """np.percentile over each pixel's valid values, rounded half to even; 0 where none."""
    _, n_bands, height, width = values.shape
    out = np.zeros((n_bands, height, width), dtype=np.uint16)
    for row in range(height):
        for col in range(width):
            sample = values[valid[:, row, col], :, row, col]
            if len(sample):
                out[:, row, col] = np.rint(np.percentile(sample, q, axis=0))
    return out, valid.sum(axis=0).astype(np.uint16)


def random_stack(seed, n_obs=9, shape=(40, 37), invalid=0.4):
    rng = np.random.default_rng(seed)
    values = rng.integers(1, 12000, (n_obs, 4, *shape)).astype(np.uint16)
    valid = rng.random((n_obs, *shape)) > invalid
    # the edge cases: no, one and two valid observations
    valid[:, 0, 0] = False
    valid[:, 0, 1] = False
    valid[4, 0, 1] = True
    valid[:, 0, 2] = False
    valid[[2, 7], 0, 2] = True
    values[2, :, 0, 2], values[7, :, 0, 2] = 101, 102  # a midpoint of x.5: rounds to even
    return values, valid


@pytest.mark.parametrize("q", [0, 25, 33.3, 50, 62.5, 90, 100])
def test_cpu_kernel_equals_numpy(q):
    values, valid = random_stack(int(q * 10))
    out, count = percentile_cpu(values, valid, q)
    expected, expected_count = numpy_reference(values, valid, q)
    np.testing.assert_array_equal(count, expected_count)
    np.testing.assert_array_equal(out, expected)
    assert count[0, 0] == 0 and (out[:, 0, 0] == 0).all()
    assert (out[:, 0, 1] == values[4, :, 0, 1]).all()  # one observation: itself


def test_midpoints_round_half_to_even():
    values, valid = random_stack(1)
    out, _ = percentile_cpu(values, valid, 50)
    assert (out[:, 0, 2] == 102).all()  # median of 101 and 102 is 101.5 -> 102 (even)


def test_kernel_rejects_wrong_types():
    values, valid = random_stack(2)
    with pytest.raises(TypeError):
        percentile_cpu(values.astype(np.int32), valid, 25)
    with pytest.raises(ValueError, match="within 0-100"):
        percentile_cpu(values, valid, 101)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs cupy and a CUDA device")
@pytest.mark.parametrize("q", [0, 25, 33.3, 50, 90, 100])
@pytest.mark.parametrize("n_obs", [1, 2, 40, 64, 80])  # 80: the general kernel beyond 64
def test_gpu_kernel_is_identical_to_cpu(q, n_obs):
    values, valid = random_stack(int(q) + n_obs, n_obs=max(n_obs, 8), shape=(300, 257))
    values, valid = values[:n_obs], valid[:n_obs]
    gpu, cpu = percentile_gpu(values, valid, q), percentile_cpu(values, valid, q)
    np.testing.assert_array_equal(gpu[0], cpu[0])
    np.testing.assert_array_equal(gpu[1], cpu[1])
    if n_obs >= 8:
        np.testing.assert_array_equal(cpu[0], numpy_reference(values, valid, q)[0])


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
@pytest.mark.parametrize(
    "source_text",
    [
        CUDA_SOURCE.replace("MAX_OBS", str(MAX_OBSERVATIONS_GPU)),
        CUDA_FAST_SOURCE.replace("KEEP", "11"),
    ],
)
def test_cuda_source_compiles(tmp_path, source_text):
    """Without a GPU the kernels cannot run, but nvcc can still reject a broken source."""
    source = tmp_path / "kernel.cu"
    source.write_text(source_text)
    result = subprocess.run(
        ["nvcc", "-c", str(source), "-o", str(tmp_path / "kernel.o")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    """The CUDA sources compiled for the CPU (tests/cudahost.py), built once per source."""
    import cudahost

    if cudahost.compiler() is None:
        pytest.skip("g++ not installed")
    workdir = tmp_path_factory.mktemp("cuda-on-cpu")

    def run(values, valid, q, source=None):
        source = source or kernel_source(values.shape[0], q)
        grid = launch_grid(values.shape[2] * values.shape[3])
        return cudahost.launch(
            cudahost.build(*source, workdir), values, valid, q / 100.0, workdir, grid
        )

    return run


GENERAL_KERNEL = (CUDA_SOURCE.replace("MAX_OBS", str(MAX_OBSERVATIONS_GPU)), "percentile_kernel")


@pytest.mark.parametrize("q", [0, 1, 25, 50, 62.5, 99, 100])
@pytest.mark.parametrize("n_obs", [1, 2, 3, 9, 64, 65, 200, 512])
def test_cuda_kernels_run_on_the_cpu_exactly_like_numpy(host_kernels, q, n_obs):
    """The exact device sources, on the glue's launch grid: the kernel the glue picks
    for N (the register kernel up to 64, the general one beyond) and the general one
    for every N, against np.percentile. Odd shapes (pixels not a multiple of the
    block), invalid fractions 0, 0.4 and 1, the values 0, 1, 65534 and 65535, ties,
    x.5 midpoints, and pixels with 0, 1 and 2 valid observations."""
    for invalid, shape in ((0.0, (5, 13)), (0.4, (9, 7)), (1.0, (3, 3))):
        values, valid = random_stack(
            n_obs + int(q), n_obs=max(n_obs, 8), shape=shape, invalid=invalid
        )
        values, valid = values[:n_obs], valid[:n_obs]
        values[:, :, 1, :] = values[0, :, 1, :]  # a row of ties
        values[:, 0, -1, :] = np.resize(
            np.array([0, 1, 65534, 65535], np.uint16), values[:, 0, -1, :].shape
        )
        if invalid == 1.0:
            valid[:] = False
        expected = numpy_reference(values, valid, q)
        for source in (None, GENERAL_KERNEL):
            out, count = host_kernels(values, valid, q, source)
            np.testing.assert_array_equal(count, expected[1])
            np.testing.assert_array_equal(out, expected[0])


def test_the_gpu_glue_hands_the_kernel_c_ordered_row_bands(host_kernels):
    """F-ordered input and a device too small for the stack: the glue's bands of rows,
    run by the real kernel source, give the whole stack's exact result."""
    values, valid = random_stack(3, n_obs=12, shape=(23, 19))
    expected = numpy_reference(values, valid, 40)
    f_values, f_valid = np.asfortranarray(values), np.asfortranarray(valid)
    bands = []

    def run(v, m, q):
        assert v.flags.c_contiguous and m.flags.c_contiguous
        bands.append(v.shape[2])
        return host_kernels(v, m, q)

    row_bytes = 19 * (12 * 4 * 2 + 12 + 4 * 2 + 2)
    out, count = in_row_bands(f_values, f_valid, 40, free_bytes=2 * 5 * row_bytes, run=run)
    assert bands == [5, 5, 5, 5, 3]  # half the free memory: 5 rows at a time
    np.testing.assert_array_equal(out, expected[0])
    np.testing.assert_array_equal(count, expected[1])


def test_the_device_entry_refuses_what_the_kernels_would_read_wrongly():
    from s2basemap.percentile import percentile_on_device

    values, valid = random_stack(1, n_obs=MAX_OBSERVATIONS_GPU + 1, shape=(2, 3))
    with pytest.raises(ValueError, match="513 observations exceed the GPU kernel's 512"):
        percentile_on_device(values, valid, 25)  # taken[512] would overflow
    values, valid = random_stack(1, n_obs=8, shape=(5, 6))
    with pytest.raises(ValueError, match="C-contiguous"):
        percentile_on_device(np.asfortranarray(values), valid, 25)
    with pytest.raises(TypeError):
        percentile_on_device(values.astype(np.int16), valid, 25)


def test_the_gpu_kernel_limit_is_where_the_general_kernel_stops():
    assert kernel_source(64, 25)[1] == "percentile_fast"
    assert kernel_source(65, 25)[1] == "percentile_kernel"
    assert f"taken[{MAX_OBSERVATIONS_GPU}]" in kernel_source(MAX_OBSERVATIONS_GPU, 25)[0]
