"""Per-unit job costs on this machine: the figures behind s2basemap.timeplan.

    python tests/benchmarks/costs.py [--edge 4096] [job scene composite outputs]

Each stage's own code on synthetic data shaped like the real thing, CPU time
(all threads, from getrusage) and wall time:
- job start: a Snakemake `script:` job that imports the package (a composite job
  also loads the numba kernel from its cache), and Snakemake's own start-up;
- fetch: one scene's AOI window (4 bands at 10 m, SCL at 20 m) from COGs laid out and
  compressing as real Collection 1 ones do (tests/benchmarks/boxworld.py), served
  over HTTP by another process;
- mask: the same scene's mask with mode scl (the CPU part of every mask job) and
  OmniCloudMask inference on the CPU (fabricated v4 weights, 20 m);
- composite: one 2048 x 2048 tile from 30 scenes (index maps, CPU backend);
- outputs: mosaic and count COGs, coverage and quicklook over a 4 x 4 tile grid.
Not part of the test run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "benchmarks")]

from boxworld import BAND_RANGES, BANDS, Served, reflectance, scl_with_clouds, write_cog


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measured(func, *args, **kwargs):
    """(result, wall s, CPU s of this process, all threads)."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - wall, cpu_seconds() - cpu


JOB_IMPORTS = {
    "job_start_s": "import s2basemap.fetch, s2basemap.masks\n",
    # a composite job also loads the percentile kernel from numba's on-disk cache
    "composite_job_start_s": (
        "import numpy as np\n"
        "import s2basemap.composite\n"
        "from s2basemap.percentile import percentile_cpu\n"
        "percentile_cpu(np.ones((3, 4, 8, 8), np.uint16), np.ones((3, 8, 8), bool), 25)\n"
    ),
}


def job_start_seconds(root: Path, body: str, jobs: int = 8) -> tuple[float, float]:
    """(wall per `script:` job running `body`, one job at a time; extra wall of the first
    such job in a new work directory, e.g. numba compiling into an empty cache)."""
    script = root / "job.py"
    script.write_text(body + "open(snakemake.output[0], 'w').close()\n")
    (root / "Snakefile").write_text(
        f"rule all:\n    input: expand('done/{{i}}', i=range({jobs}))\n"
        f"rule job:\n    output: 'done/{{i}}'\n    script: '{script}'\n"
    )
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(root / "Snakefile"),
        "-d",
        str(root),
        "--cores",
        "1",
        "--quiet",
        "all",
    ]
    env = os.environ | {"NUMBA_CACHE_DIR": str(root / "numba")}

    def timed(*targets) -> float:
        # targets first: --quiet would take them as its values
        started = time.perf_counter()
        subprocess.run(
            [*command[:3], *targets, *command[3:]], check=True, capture_output=True, env=env
        )
        return time.perf_counter() - started

    first = timed("done/0")  # cold caches
    full = timed()  # the other jobs, warm
    idle = timed()  # nothing to do: Snakemake's start-up only
    per_job = (full - idle) / (jobs - 1)
    return per_job, max(first - idle - per_job, 0.0)


def workflow_start_seconds(root: Path) -> float:
    """Snakemake reading this workflow (config validation, AOI, grid) and planning a
    dry run of the shipped configuration: what every run pays before its first job."""
    config = (
        (REPO / "config" / "config.yaml")
        .read_text()
        .replace("aoi: resources/aoi", f"aoi: {REPO}/resources/aoi")
    )
    (root / "config.yaml").write_text(config)
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "workflow" / "Snakefile"),
            "-d",
            str(root),
            "--configfile",
            str(root / "config.yaml"),
            "-n",
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def job_costs(root: Path) -> dict:
    if importlib.util.find_spec("snakemake") is None:  # a GPU machine's image, say
        print("Snakemake is not installed: no job start-up figures", flush=True)
        return {}
    costs = {}
    for name, body in JOB_IMPORTS.items():
        (root / name).mkdir()
        costs[name], cold = job_start_seconds(root / name, body)
        if name == "composite_job_start_s":
            costs["numba_compile_s"] = cold
    return costs | {"snakemake_start_s": workflow_start_seconds(root)}


def scene_costs(root: Path, edge: int) -> dict:
    from pyproj import CRS
    from shapely.geometry import box

    from s2basemap.aoi import AOI
    from s2basemap.fetch import FetchOptions, fetch_scene
    from s2basemap.masks import RED_GREEN_NIR, MaskOptions, mask_scene
    from s2basemap.ocm import OCMOptions, predict, to_inference_grid
    from testworld.weights import fabricate_weights

    rng = np.random.default_rng(0)
    x0, y0 = 399960.0, 4000020.0
    cogs = root / "cogs"
    cogs.mkdir()
    # realistic entropy (deflate ratio ~0.67 as real Collection 1 tiles) and C1's layout
    for band in BANDS:
        data = reflectance(rng, edge, *BAND_RANGES[band])
        write_cog(cogs / f"{band}.tif", data, 32615, x0, y0, 10)
    write_cog(cogs / "scl.tif", scl_with_clouds(rng, edge // 2), 32615, x0, y0, 20)
    served = Served(cogs, 0.0)
    url = served.url
    spec = {
        "id": "S2X_15SXX_20250101_0_L2A",
        "assets": {b: f"{url}/{b}.tif" for b in ("blue", "green", "red", "nir", "scl")},
        "offset": {"dn": -1000, "source": "metadata", "reason": "baseline 05.11 carries +1000"},
    }
    aoi = AOI(box(x0, y0 - 10 * edge, x0 + 10 * edge, y0), CRS.from_epsg(32615))
    options = FetchOptions()
    fetch_scene(spec, aoi, root / "warm.tif", options)
    record, fetch_wall, fetch_cpu = measured(fetch_scene, spec, aoi, root / "scene.tif", options)
    served.stop()
    assert record["status"] == "ok", record
    scl_only = MaskOptions(mode="scl")
    # the kernels load from numba's cache once per process (a mask job's start-up)
    mask_scene(root / "scene.tif", record, root / "warm-mask.tif", scl_only)
    _, _, mask_cpu = measured(mask_scene, root / "scene.tif", record, root / "mask.tif", scl_only)
    weights = fabricate_weights(root / "weights", "random")
    ocm = OCMOptions(weights_dir=str(weights))
    import rasterio

    with rasterio.open(root / "scene.tif") as src:
        stack = src.read()
    red_green_nir = stack[list(RED_GREEN_NIR)]
    predict(red_green_nir[:, :1024, :1024], ocm)  # model load
    _, ocm_wall, ocm_cpu = measured(predict, red_green_nir, ocm)
    # the host work around a GPU's inference: block means to the inference grid (the
    # classes' combination with SCL is in the mask figure)
    _, _, host_cpu = measured(to_inference_grid, stack, 2, RED_GREEN_NIR)
    mpx = edge * edge / 1e6
    return {
        "fetch_cpu_s_per_mpx": fetch_cpu / mpx,
        "fetch_wall_s_per_mpx": fetch_wall / mpx,
        "mask_cpu_s_per_mpx": mask_cpu / mpx,
        "ocm_cpu_s_per_mpx": ocm_cpu / mpx,
        "ocm_wall_s_per_mpx": ocm_wall / mpx,
        "ocm_host_cpu_s_per_mpx": host_cpu / mpx,
    }


def composite_costs(root: Path) -> dict:
    from pyproj import CRS
    from shapely.geometry import box

    from s2basemap.aoi import AOI
    from s2basemap.composite import composite_tile
    from s2basemap.grid import output_grid
    from testworld.stacks import write_tile_scenes

    aoi = AOI(box(505_000, 1_390_000, 525_480, 1_410_480), CRS.from_epsg(5070))
    grid = output_grid(aoi, "EPSG:5070", (10.0, 10.0), tile_size=2048)
    scenes = write_tile_scenes(
        root / "tile", grid.tile_bounds("0000_0000"), grid.crs, per_zone=15, margin=64
    )
    composite_tile(
        scenes[:2],
        grid,
        "0000_0000",
        aoi,
        25,
        "nearest",
        root / "warm.tif",
        backend="cpu",
        threads=2,
    )
    _, wall, cpu = measured(
        composite_tile,
        scenes,
        grid,
        "0000_0000",
        aoi,
        25,
        "nearest",
        root / "tile.tif",
        backend="cpu",
        threads=2,
    )
    scene_mpx = len(scenes) * 2048 * 2048 / 1e6
    return {
        "composite_cpu_s_per_scene_mpx": cpu / scene_mpx,
        "composite_wall_s_per_scene_mpx": wall / scene_mpx,
    }


def output_costs(root: Path, tiles_per_side: int = 4) -> dict:
    import rasterio
    from pyproj import CRS
    from shapely.geometry import box

    from s2basemap.aoi import AOI
    from s2basemap.composite import _tile_profile
    from s2basemap.grid import output_grid
    from s2basemap.outputs import assemble, coverage, quicklook
    from testworld.stacks import smooth_field

    edge = 2048 * tiles_per_side * 10
    aoi = AOI(box(505_000, 1_390_000, 505_000 + edge, 1_390_000 + edge), CRS.from_epsg(5070))
    grid = output_grid(aoi, "EPSG:5070", (10.0, 10.0), tile_size=2048)
    rng = np.random.default_rng(1)
    tiles = {}
    for tile_id in grid.tile_ids(aoi.geometry):
        data = np.stack(
            [smooth_field(rng, 2048, 2048, 300, 3000) for _ in range(4)]
            + [np.full((2048, 2048), 9, dtype=np.uint16)]
        )
        path = root / f"{tile_id}.tif"
        row_off, col_off, height, width = grid.tile_window(tile_id)
        # written as the composite writes its columns
        with rasterio.open(
            path, "w", **_tile_profile(grid, row_off, col_off, height, width)
        ) as dst:
            dst.write(data)
        tiles[str(path)] = grid.tile_window(tile_id)

    def outputs():
        assemble(grid, tiles, root / "mosaic.tif", root / "count.tif", "deflate", {})
        coverage(root / "mosaic.tif", aoi)
        quicklook(root / "mosaic.tif", root / "quicklook.png")

    _, wall, cpu = measured(outputs)
    mpx = len(tiles) * 2048 * 2048 / 1e6
    return {"outputs_wall_s_per_mpx": wall / mpx, "outputs_cpu_s_per_mpx": cpu / mpx}


SECTIONS = ["job", "scene", "composite", "outputs"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edge", type=int, default=4096, help="scene edge for fetch and mask")
    # checked here: Python 3.12.1's argparse refuses an empty list against `choices`
    parser.add_argument("sections", nargs="*", help=f"some of {', '.join(SECTIONS)}; default: all")
    args = parser.parse_args()
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    args.sections = args.sections or SECTIONS
    costs = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, func in (
            ("job", job_costs),
            ("scene", lambda d: scene_costs(d, args.edge)),
            ("composite", composite_costs),
            ("outputs", output_costs),
        ):
            if name not in args.sections:
                continue
            (root / name).mkdir()
            costs |= func(root / name)
            print(json.dumps({k: round(v, 5) for k, v in costs.items()}), flush=True)
    print(f"on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
