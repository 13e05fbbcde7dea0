"""Run the package's CUDA kernel sources on the CPU: the CUDA-on-CPU harness.

GPUs are rare where the tests run, so the exact source strings the GPU compiles
are compiled by g++ against a small header: `threadIdx` and friends become
globals that a host loop walks over every block and thread, `__global__` and
`__device__` vanish, and the IEEE round-to-nearest intrinsics become plain
double arithmetic. `-ffp-contract=off` keeps g++ from fusing a multiply and an
add, which the intrinsics forbid on the device too, so each step rounds as it
does there. x86-64 doubles are IEEE binary64 (SSE2), as on the device, and its
square root (std::sqrt, sqrtsd) is correctly rounded like `__dsqrt_rn`.

`build`/`launch` run the percentile kernels (s2basemap.percentile);
`build_method`/`launch_method` the pixel-consistent ones (s2basemap.methods).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np

HEADER = r"""
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>
#define __global__
#define __device__
#define __restrict__ __restrict
struct dim3_t { unsigned int x = 0, y = 0, z = 0; };
static dim3_t threadIdx, blockIdx, blockDim, gridDim;
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dsub_rn(double a, double b) { return a - b; }
static inline double __ddiv_rn(double a, double b) { return a / b; }
static inline double __dsqrt_rn(double a) { return std::sqrt(a); }  // IEEE sqrt (SSE2 sqrtsd)
"""

DRIVER_IO = r"""
template <typename T> static std::vector<T> load(const char* path, size_t n) {
    std::vector<T> data(n);
    FILE* f = std::fopen(path, "rb");
    if (!f || std::fread(data.data(), sizeof(T), n, f) != n) { std::perror(path); std::exit(2); }
    std::fclose(f);
    return data;
}
template <typename T> static void save(const char* path, const std::vector<T>& data) {
    FILE* f = std::fopen(path, "wb");
    if (!f || std::fwrite(data.data(), sizeof(T), data.size(), f) != data.size()) { std::perror(path); std::exit(2); }
    std::fclose(f);
}
"""

# Reads the kernel's inputs from files, launches it block by block and thread by
# thread like the device would, and writes its outputs.
DRIVER = (
    DRIVER_IO
    + r"""
int main(int argc, char** argv) {
    if (argc != 11) { std::fprintf(stderr, "usage: values valid q n_obs n_bands n_pixels blocks threads out count\n"); return 2; }
    const double q = std::strtod(argv[3], nullptr);
    const int n_obs = std::atoi(argv[4]), n_bands = std::atoi(argv[5]);
    const int blocks = std::atoi(argv[7]), threads = std::atoi(argv[8]);
    const long long n_pixels = std::atoll(argv[6]);
    auto values = load<unsigned short>(argv[1], (size_t)n_obs * n_bands * n_pixels);
    auto valid_bytes = load<unsigned char>(argv[2], (size_t)n_obs * n_pixels);
    bool* valid = reinterpret_cast<bool*>(valid_bytes.data());
    std::vector<unsigned short> out((size_t)n_bands * n_pixels, 0xBEEF), count((size_t)n_pixels, 0xBEEF);
    blockDim.x = threads;
    gridDim.x = blocks;
    for (blockIdx.x = 0; blockIdx.x < gridDim.x; ++blockIdx.x)
        for (threadIdx.x = 0; threadIdx.x < blockDim.x; ++threadIdx.x)
            KERNEL(values.data(), valid, q, n_obs, n_bands, n_pixels, out.data(), count.data());
    save(argv[9], out);
    save(argv[10], count);
    return 0;
}
"""
)


# The same for the pixel-consistent methods' kernels (s2basemap.methods): the key kind
# as one more input and the chosen observation as a third output.
METHOD_DRIVER = (
    DRIVER_IO
    + r"""
int main(int argc, char** argv) {
    if (argc != 13) { std::fprintf(stderr, "usage: values valid q kind n_obs n_bands n_pixels blocks threads out count chosen\n"); return 2; }
    const double q = std::strtod(argv[3], nullptr);
    const int kind = std::atoi(argv[4]), n_obs = std::atoi(argv[5]), n_bands = std::atoi(argv[6]);
    const long long n_pixels = std::atoll(argv[7]);
    const int blocks = std::atoi(argv[8]), threads = std::atoi(argv[9]);
    auto values = load<unsigned short>(argv[1], (size_t)n_obs * n_bands * n_pixels);
    auto valid_bytes = load<unsigned char>(argv[2], (size_t)n_obs * n_pixels);
    bool* valid = reinterpret_cast<bool*>(valid_bytes.data());
    std::vector<unsigned short> out((size_t)n_bands * n_pixels, 0xBEEF), count((size_t)n_pixels, 0xBEEF);
    std::vector<short> chosen((size_t)n_pixels, (short)0x7EEF);
    blockDim.x = threads;
    gridDim.x = blocks;
    for (blockIdx.x = 0; blockIdx.x < gridDim.x; ++blockIdx.x)
        for (threadIdx.x = 0; threadIdx.x < blockDim.x; ++threadIdx.x)
            KERNEL(values.data(), valid, q, kind, n_obs, n_bands, n_pixels, out.data(), count.data(), chosen.data());
    save(argv[10], out);
    save(argv[11], count);
    save(argv[12], chosen);
    return 0;
}
"""
)


def compiler() -> str | None:
    return shutil.which("g++")


def build(source: str, kernel: str, workdir: Path, driver: str = DRIVER) -> Path:
    """Compile one kernel source (exactly as the device gets it) with the host driver."""
    text = HEADER + source + f"\n#define KERNEL {kernel}\n" + driver
    name = hashlib.sha256(text.encode()).hexdigest()[:16]
    exe = workdir / f"kernel-{name}"
    if not exe.exists():
        cpp = workdir / f"kernel-{name}.cpp"
        cpp.write_text(text)
        result = subprocess.run(
            [
                compiler(),
                "-std=c++17",
                "-O1",
                "-ffp-contract=off",
                "-Wall",
                "-Wno-unknown-pragmas",
                "-Wno-unused-variable",
                str(cpp),
                "-o",
                str(exe),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"g++ rejected the kernel source:\n{result.stderr}")
    return exe


def launch(
    exe: Path, values: np.ndarray, valid: np.ndarray, q: float, workdir: Path, grid: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Run a built kernel over (N, B, H, W) uint16 values and (N, H, W) bool validity,
    laid out as the GPU glue hands them to the device (C order), on the glue's
    (blocks, threads) grid. Outputs start as 0xBEEF, so a pixel no thread wrote shows."""
    n_obs, n_bands, height, width = values.shape
    blocks, threads = grid
    paths = {k: workdir / f"{k}.bin" for k in ("values", "valid", "out", "count")}
    np.ascontiguousarray(values, dtype=np.uint16).tofile(paths["values"])
    np.ascontiguousarray(valid, dtype=np.bool_).tofile(paths["valid"])
    subprocess.run(
        [
            str(exe),
            str(paths["values"]),
            str(paths["valid"]),
            repr(float(q)),
            str(n_obs),
            str(n_bands),
            str(height * width),
            str(blocks),
            str(threads),
            str(paths["out"]),
            str(paths["count"]),
        ],
        check=True,
        capture_output=True,
    )
    out = np.fromfile(paths["out"], dtype=np.uint16).reshape(n_bands, height, width)
    count = np.fromfile(paths["count"], dtype=np.uint16).reshape(height, width)
    return out, count


def build_method(source: str, kernel: str, workdir: Path) -> Path:
    """Compile a pixel-consistent method's kernel source with its host driver."""
    return build(source, kernel, workdir, METHOD_DRIVER)


def launch_method(
    exe: Path,
    values: np.ndarray,
    valid: np.ndarray,
    q: float,
    kind: int,
    workdir: Path,
    grid: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run a built method kernel like `launch`: (out, count, chosen). The outputs start
    as 0xBEEF (chosen as 0x7EEF), so a pixel no thread wrote shows."""
    n_obs, n_bands, height, width = values.shape
    blocks, threads = grid
    paths = {k: workdir / f"method-{k}.bin" for k in ("values", "valid", "out", "count", "chosen")}
    np.ascontiguousarray(values, dtype=np.uint16).tofile(paths["values"])
    np.ascontiguousarray(valid, dtype=np.bool_).tofile(paths["valid"])
    subprocess.run(
        [
            str(exe),
            str(paths["values"]),
            str(paths["valid"]),
            repr(float(q)),
            str(int(kind)),
            str(n_obs),
            str(n_bands),
            str(height * width),
            str(blocks),
            str(threads),
            str(paths["out"]),
            str(paths["count"]),
            str(paths["chosen"]),
        ],
        check=True,
        capture_output=True,
    )
    out = np.fromfile(paths["out"], dtype=np.uint16).reshape(n_bands, height, width)
    count = np.fromfile(paths["count"], dtype=np.uint16).reshape(height, width)
    chosen = np.fromfile(paths["chosen"], dtype=np.int16).reshape(height, width)
    return out, count, chosen
