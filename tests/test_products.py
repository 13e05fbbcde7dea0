"""The whole mosaic, end to end through Snakemake, against an independent numpy reference.

The reference never touches the workflow's code: it reads the world's source
COGs, finds each output pixel's source pixel with pyproj, applies the world's
known offset and SCL, clips the output pixels to the AOI with shapely, and calls
np.nanpercentile.

Nearest neighbour has ties: a target pixel centre that maps within a hair of a
source pixel edge (or of the AOI outline) may fall either way, and PROJ's
iterative inverse projections differ between builds by ~0.1 mm. Such pixels
(TIE_PIXELS of a source pixel, TIE_METRES of the outline) are reported and
left out of the exact comparison; they are a handful in tens of thousands.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import date

import geopandas
import numpy as np
import pytest
import rasterio
import rasterio.shutil
import shapely
from pyproj import Transformer
from rio_cogeo.cogeo import cog_validate
from stacschemas import validate

from conftest import run_snakemake, world_config

SCL_INVALID = (1, 3, 8, 9, 10, 11)
TIE_PIXELS = 1e-4
TIE_METRES = 1e-3
PERCENTILE = 25
RUNS = {
    "albers": {"crs": "EPSG:5070", "resolution": 10, "tile_size": 256},
    "wgs84": {"crs": "EPSG:4326", "resolution": 0.0001, "tile_size": 256},
}
METADATA_FIELDS = {
    "product",
    "status",
    "period",
    "files",
    "crs",
    "resolution",
    "resolution_unit",
    "bounds",
    "size",
    "bands",
    "nodata",
    "reflectance_scale",
    "percentile",
    "composite",
    "mask",
    "source",
    "scenes",
    "acquisitions",
    "left_out",
    "valid_coverage",
    "software",
    "processing_seconds",
    "attribution",
}
SCENE_FIELDS = {
    "id",
    "datetime",
    "tile",
    "acquisition",
    "processing_baseline",
    "hrefs",
    "offset",
    "valid_fraction",
    "cloud_fraction",
}


@pytest.mark.parametrize("compress", ["deflate", "zstd"])
def test_cogs_are_the_bytes_gdals_cog_driver_writes_at_its_defaults(tmp_path, compress):
    """write_cog's cheaper scratch overviews leave the COG's bytes as GDAL's defaults make
    them, for either compression (a zstd COG's overviews share the scratch's setting)."""
    from s2basemap.outputs import write_cog

    rng = np.random.default_rng(5)
    # smooth plus noise: overviews to build and bytes that depend on the codec's level
    smooth = np.cumsum(rng.integers(-40, 41, size=(4, 1300, 1300)), axis=2)
    data = (2000 + smooth + rng.integers(0, 60, size=smooth.shape)).clip(1, 10_000)
    source, vrt = tmp_path / "source.tif", tmp_path / "source.vrt"
    profile = {"driver": "GTiff", "width": 1300, "height": 1300, "count": 4, "dtype": "uint16"}
    with rasterio.open(
        source, "w", **profile, crs="EPSG:5070", transform=rasterio.Affine(10, 0, 0, 0, -10, 0)
    ) as dst:
        dst.write(data.astype(np.uint16))
    rasterio.shutil.copy(source, vrt, driver="VRT")
    # as the workflow's VRTs name their sources: absolute paths
    absolute = vrt.read_text().replace(
        'relativeToVRT="1">source.tif', f'relativeToVRT="0">{source}'
    )
    assert str(source) in absolute
    write_cog(absolute, tmp_path / "ours.tif", compress, "average")
    rasterio.shutil.copy(
        vrt,
        tmp_path / "gdal.tif",
        driver="COG",
        COMPRESS=compress.upper(),
        PREDICTOR="YES",
        BLOCKSIZE=512,
        OVERVIEW_RESAMPLING="AVERAGE",
        BIGTIFF="IF_SAFER",
        NUM_THREADS="ALL_CPUS",
    )
    with rasterio.open(tmp_path / "ours.tif") as ours:
        assert ours.overviews(1) == [2, 4]
    assert (tmp_path / "ours.tif").read_bytes() == (tmp_path / "gdal.tif").read_bytes()


@pytest.fixture(scope="module", params=list(RUNS))
def product_run(request, world, tmp_path_factory):
    workdir = tmp_path_factory.mktemp(f"products-{request.param}")
    config = world_config(world, target=RUNS[request.param], composite={"percentile": PERCENTILE})
    run_snakemake(workdir, config)
    return request.param, workdir


def near_edge(geometry, x, y, crs_is_geographic):
    """Points within TIE_METRES of the outline (in degrees: about that many metres)."""
    tolerance = TIE_METRES / 111_320 if crs_is_geographic else TIE_METRES
    return shapely.distance(geometry.boundary, shapely.points(x, y)) < tolerance


@dataclass
class Reference:
    """The reference's stack: one layer per acquisition (the world's truth), fused."""

    layers: np.ndarray  # (A, 4, H, W) R, G, B, NIR
    valid: np.ndarray  # (A, H, W)
    ties: np.ndarray  # (H, W) pixels left out of exact comparisons
    with_data: np.ndarray  # (H, W) acquisitions with data at the pixel: a count's bound
    acquisitions: list[list[int]]  # each acquisition's scenes (indices), first seen first


def scene_layers(world, crs, transform, shape, scenes):
    """The scenes' (N, 4, H, W) R, G, B, NIR on the output grid, their (N, H, W) validity
    and data (what takes part in fusion: on the tile, no band and no SCL 0), the (H, W)
    tie pixels and the pixel centres, from the source files."""
    aoi = geopandas.read_file(world.aoi_gpkg)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    x, y = transform * (cols + 0.5, rows + 0.5)
    target_aoi = aoi.to_crs(crs).geometry.union_all()
    inside_target = shapely.contains_xy(target_aoi, x, y)
    ties = near_edge(target_aoi, x, y, crs.is_geographic)
    layers, valid_layers, present_layers = [], [], []
    for scene in scenes:
        with rasterio.open(scene.path("red")) as src:
            src_transform, size = src.transform, src.width
        sx, sy = Transformer.from_crs(crs, scene.epsg, always_xy=True).transform(x, y)
        fcol, frow = (sx - src_transform.c) / 10, (src_transform.f - sy) / 10
        col, row = np.floor(fcol).astype(int), np.floor(frow).astype(int)
        on_tile = (col >= 0) & (col < size) & (row >= 0) & (row < size)
        ties |= on_tile & (
            (np.abs(fcol - np.round(fcol)) < TIE_PIXELS)
            | (np.abs(frow - np.round(frow)) < TIE_PIXELS)
        )
        col, row = np.clip(col, 0, size - 1), np.clip(row, 0, size - 1)
        dn = []
        for band in ("red", "green", "blue", "nir"):
            with rasterio.open(scene.path(band)) as src:
                dn.append(src.read(1)[row, col].astype(np.int64))
        dn = np.stack(dn)
        with rasterio.open(scene.path("scl")) as src:
            scl = src.read(1)[row // 2, col // 2]
        offset = -1000 if scene.spec.data_offset else 0
        value = np.where(dn == 0, 0, np.maximum(dn + offset, 1))
        # every output pixel inside the AOI takes its nearest source pixel, wherever
        # that pixel's centre lies (just outside the AOI too)
        present = on_tile & (dn > 0).all(axis=0) & (scl != 0)
        layers.append(value)
        valid_layers.append(present & inside_target & ~np.isin(scl, SCL_INVALID))
        present_layers.append(present)
    return np.stack(layers), np.stack(valid_layers), np.stack(present_layers), ties, (x, y)


def acquisition_groups(scenes) -> list[list[int]]:
    """The scenes of each acquisition, by the world's truth (one datatake per platform,
    day and relative orbit), in the order their first scenes come; by scene id within."""
    groups: dict[tuple, list[int]] = {}
    for i, scene in enumerate(scenes):
        groups.setdefault((scene.spec.platform, scene.spec.date, scene.spec.orbit), []).append(i)
    return [sorted(members, key=lambda i: scenes[i].id) for members in groups.values()]


def reference_stack(world, month, crs, transform, shape, scenes=None) -> Reference:
    """One observation per acquisition and pixel, by the rule, from the source files:
    of an acquisition's scenes with data at the pixel, the one whose MGRS tile centre
    (the world's tile bounds) is nearest the pixel centre in the output CRS, ties to
    the smaller scene id, gives the values and the validity."""
    scenes = scenes if scenes is not None else world.newest(month)
    layers, valid, present, ties, (x, y) = scene_layers(world, crs, transform, shape, scenes)
    groups = acquisition_groups(scenes)
    fused_layers, fused_valid = [], []
    for members in groups:
        distance = np.stack([squared_distance(world, scenes[i], crs, x, y) for i in members])
        distance[~present[members]] = np.inf
        nearest = np.asarray(members)[np.argmin(distance, axis=0)]
        rows, cols = np.indices(nearest.shape)
        claimed = present[nearest, rows, cols]
        fused_layers.append(np.moveaxis(layers[nearest, :, rows, cols], -1, 0))
        fused_valid.append(valid[nearest, rows, cols] & claimed)
    with_data = np.stack([present[m].any(axis=0) for m in groups]).sum(axis=0)
    return Reference(np.stack(fused_layers), np.stack(fused_valid), ties, with_data, groups)


def squared_distance(world, scene, crs, x, y) -> np.ndarray:
    tile_crs, (left, bottom, right, top) = world.tile_bounds[scene.tile]
    cx, cy = Transformer.from_crs(tile_crs, crs, always_xy=True).transform(
        (left + right) / 2, (bottom + top) / 2
    )
    return (x - cx) ** 2 + (y - cy) ** 2


def reference_mosaic(world, month, crs, transform, shape, scenes=None):
    """(4, H, W) R, G, B, NIR, the (H, W) count of valid acquisitions and the (H, W) tie
    pixels, from the source files."""
    ref = reference_stack(world, month, crs, transform, shape, scenes)
    stack = ref.layers.astype(np.float64)  # (A, 4, H, W)
    stack[~np.broadcast_to(ref.valid[:, None], stack.shape)] = np.nan
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning, match="All-NaN"):
        mosaic = np.nanpercentile(stack, PERCENTILE, axis=0)
    mosaic = np.where(np.isnan(mosaic), 0, np.rint(mosaic)).astype(np.uint16)
    return mosaic, ref.valid.sum(axis=0), ref.ties


def assert_count_within_acquisitions(world, month, count, crs, transform, scenes=None):
    """No pixel counts more valid observations than acquisitions have data there."""
    ref = reference_stack(world, month, crs, transform, count.shape, scenes)
    over = (count > ref.with_data) & ~ref.ties
    assert not over.any(), f"{int(over.sum())} pixels count more than their acquisitions"
    return ref


@pytest.mark.parametrize("month", ["2022-01", "2022-02"])
def test_mosaic_equals_the_numpy_reference_for_every_pixel(world, product_run, month):
    name, workdir = product_run
    start, end = {"2022-01": ("2022_01_01", "2022_01_31"), "2022-02": ("2022_02_01", "2022_02_28")}[
        month
    ]
    stem = workdir / "results" / month / f"S2_RGBNIR_{start}_to_{end}"
    with rasterio.open(f"{stem}.tif") as src:
        mosaic, crs, transform = src.read(), src.crs, src.transform
        assert src.descriptions == ("Red", "Green", "Blue", "NIR")
        assert src.scales == (0.0001,) * 4 and src.nodata == 0 and src.dtypes[0] == "uint16"
        assert src.compression.name == "deflate" and src.block_shapes == [(512, 512)] * 4
    with rasterio.open(f"{stem}_count.tif") as src:
        count = src.read(1)
    assert crs.to_string() == RUNS[name]["crs"]
    assert transform.a == pytest.approx(RUNS[name]["resolution"])
    expected, expected_count, ties = reference_mosaic(
        world, month, crs, transform, mosaic.shape[1:]
    )
    print(f"{name} {month}: {int(ties.sum())} tie pixels of {ties.size} left out")
    assert ties.sum() < 0.005 * ties.size
    np.testing.assert_array_equal(count[~ties], expected_count[~ties])
    np.testing.assert_array_equal(mosaic[:, ~ties], expected[:, ~ties])
    assert_count_within_acquisitions(world, month, count, crs, transform)
    assert (count > 0).mean() > 0.5  # the comparison covered real data, not just nodata
    assert (count >= 2).any()  # including pixels seen from both UTM zones or dates


@pytest.mark.parametrize("source", ["earth-search-c1", "custom"])
def test_a_collection_1_month_equals_the_numpy_reference(world, tmp_path, source):
    stac = {"source": "earth-search-c1", "url": world.stac_url}
    if source == "custom":  # the same collection, everything named by the user
        stac = {
            "source": "custom",
            "url": world.stac_url,
            "collection": "sentinel-2-c1-l2a",
            "assets": {b: b for b in ("blue", "green", "red", "nir", "scl")},
        }
    config = world_config(
        world, months=["2022-02"], composite={"percentile": PERCENTILE}, stac=stac
    )
    run_snakemake(tmp_path, config)
    metadata = json.loads((tmp_path / "results/2022-02/metadata.json").read_text())
    assert (
        metadata["source"]["collection"] == "sentinel-2-c1-l2a"
        and metadata["source"]["name"] == source
    )
    scenes = world.newest("2022-02", world.c1_scenes)
    assert sorted(s["id"] for s in metadata["scenes"]) == [s.id for s in scenes]
    assert all(
        s["offset"]["dn"] == -1000 and s["processing_baseline"] == "05.10"
        for s in metadata["scenes"]
    )
    with rasterio.open(tmp_path / "results/2022-02/S2_RGBNIR_2022_02_01_to_2022_02_28.tif") as src:
        mosaic, crs, transform = src.read(), src.crs, src.transform
    expected, _, ties = reference_mosaic(world, "2022-02", crs, transform, mosaic.shape[1:], scenes)
    assert ties.sum() < 0.005 * ties.size and (mosaic[0] > 0).mean() > 0.5
    np.testing.assert_array_equal(mosaic[:, ~ties], expected[:, ~ties])


def test_products_are_valid_cogs_items_and_metadata(world, product_run):
    name, workdir = product_run
    month_dir = workdir / "results" / "2022-02"
    metadata = json.loads((month_dir / "metadata.json").read_text())
    assert METADATA_FIELDS <= set(metadata)
    assert metadata["status"] == "ok" and metadata["percentile"] == PERCENTILE
    assert metadata["crs"]["epsg"] == int(RUNS[name]["crs"].split(":")[1])
    assert metadata["attribution"] == "Contains modified Copernicus Sentinel data 2022"
    assert metadata["mask"]["mode"] == "scl" and metadata["mask"]["scl_invalid"] == list(
        SCL_INVALID
    )
    assert {s["id"] for s in metadata["scenes"]} == {s.id for s in world.newest("2022-02")}
    for scene in metadata["scenes"]:
        assert SCENE_FIELDS <= set(scene)
        assert scene["hrefs"]["red"] == world.url(world.scene(scene["id"]).path("red"))
    # each datatake's two tiles form one acquisition, named by its datatake without the baseline
    kept = world.newest("2022-02")
    truth = [sorted(kept[i].id for i in m) for m in acquisition_groups(kept)]
    acquisitions = metadata["acquisitions"]
    assert sorted(a["scenes"] for a in acquisitions) == sorted(truth)
    for acquisition in acquisitions:
        spec = world.scene(acquisition["scenes"][0]).spec
        assert acquisition["id"] == spec.datatake_id().rsplit("_N", 1)[0]
        assert {
            s["acquisition"] for s in metadata["scenes"] if s["id"] in acquisition["scenes"]
        } == {acquisition["id"]}
    wrong_flag = next(s for s in metadata["scenes"] if s["id"] == "S2B_16SBU_20220224_0_L2A")
    assert wrong_flag["offset"]["source"] == "pixels" and wrong_flag["offset"]["dn"] == 0
    assert set(metadata["processing_seconds"]) == {"fetch", "mask", "composite"}
    assert 0.9 < metadata["valid_coverage"] <= 1.0
    for key in ("mosaic", "counts"):
        valid, errors, _ = cog_validate(str(month_dir / metadata["files"][key]))
        assert valid, errors
    item = json.loads((month_dir / metadata["files"]["stac_item"]).read_text())
    validate(item)  # STAC 1.1 core and its extensions' schemas, offline
    assert {a for a in item["assets"]} == {"mosaic", "count", "metadata", "thumbnail"}
    props = item["properties"]
    with rasterio.open(month_dir / metadata["files"]["mosaic"]) as cog:  # the grid it states
        assert props["proj:code"] == f"EPSG:{cog.crs.to_epsg()}"
        assert props["proj:shape"] == [cog.height, cog.width]
        assert props["proj:transform"] == list(cog.transform)[:6]
        assert props["proj:bbox"] == list(cog.bounds)
        assert [b["nodata"] for b in item["assets"]["mosaic"]["bands"]] == list(cog.nodatavals)
        assert [b["data_type"] for b in item["assets"]["mosaic"]["bands"]] == list(cog.dtypes)
        assert props.get("gsd") == (None if cog.crs.is_geographic else cog.res[0])
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning):
        png = rasterio.open(month_dir / metadata["files"]["quicklook"])
    with png:
        assert png.count == 4 and png.dtypes[0] == "uint8"
        alpha = png.read(4)
        assert 0 < (alpha == 255).mean() < 1  # clipped to the hexagon: transparent corners


def test_month_without_scenes_gets_an_explicit_outcome(world, tmp_path):
    config = world_config(world, months=["2022-03"])
    run_snakemake(tmp_path, config)
    metadata = json.loads((tmp_path / "results" / "2022-03" / "metadata.json").read_text())
    assert metadata["status"] == "no_scenes" and metadata["scenes"] == []
    assert "mosaic" not in metadata["files"]
    assert not list((tmp_path / "results" / "2022-03").glob("*.tif"))


def nearest_rank_pick(layers, valid, percentile):
    """Per pixel, the index of the valid observation at the nearest rank of brightness
    (red + green + blue; ties to the lower index, the earlier acquisition), -1 where none."""
    brightness = layers[:, :3].sum(axis=1).astype(np.float64)
    brightness[~valid] = np.inf
    order = np.broadcast_to(np.arange(len(layers))[:, None, None], brightness.shape)
    ranked = np.lexsort((order, brightness), axis=0)
    n = valid.sum(axis=0)
    k = np.minimum(np.maximum(np.ceil(percentile / 100 * n), 1), np.maximum(n, 1)) - 1
    chosen = np.take_along_axis(ranked, k.astype(np.int64)[None], axis=0)[0]
    return np.where(n > 0, chosen, -1)


def medoid_index(layers, valid):
    """Per pixel, the index of the valid observation with the least sum of Euclidean
    distances to the others (sums in observation order; ties to the lower index)."""
    costs = np.full(valid.shape, np.inf)
    for i in range(len(layers)):
        total = np.zeros(valid.shape[1:])
        for j in range(len(layers)):
            d2 = ((layers[i] - layers[j]) ** 2).sum(axis=0)
            total = total + np.where(valid[j], np.sqrt(d2.astype(np.float64)), 0.0)
        costs[i] = np.where(valid[i], total, np.inf)
    return np.where(valid.any(axis=0), np.argmin(costs, axis=0), -1)


def reference_dated(world, month, crs, transform, shape, method, scenes=None):
    """The mosaic, count, day band and tie pixels a dated method must give: acquisitions
    in time order (their first scenes'), dated by their first scene."""
    scenes = sorted(scenes or world.newest(month), key=lambda s: (s.datetime, s.id))
    ref = reference_stack(world, month, crs, transform, shape, scenes)
    layers, valid = ref.layers, ref.valid
    if method == "pick":
        chosen = nearest_rank_pick(layers, valid, PERCENTILE)
    else:
        chosen = medoid_index(layers, valid)
    rows, cols = np.indices(chosen.shape)
    mosaic = np.moveaxis(layers[np.maximum(chosen, 0), :, rows, cols], -1, 0)
    mosaic[:, chosen < 0] = 0
    start = date.fromisoformat(f"{month}-01")
    first = [
        scenes[min(m, key=lambda i: (scenes[i].datetime, scenes[i].id))] for m in ref.acquisitions
    ]
    day = np.array([(date.fromisoformat(s.datetime[:10]) - start).days for s in first])
    days = np.where(chosen >= 0, day[np.maximum(chosen, 0)], 255)
    return mosaic.astype(np.uint16), valid.sum(axis=0), days.astype(np.uint8), ref.ties


def test_pick_and_medoid_months_equal_references_built_from_the_source_cogs(world, tmp_path):
    config = world_config(
        world,
        composite={"method": "pick", "percentile": PERCENTILE},
        overrides={"2022-02": {"composite": {"method": "medoid"}}},
    )
    run_snakemake(tmp_path, config)
    run_snakemake(tmp_path, config, "--report", str(tmp_path / "report.html"))
    report = (tmp_path / "report.html").read_text()
    for month, method, last in (("2022-01", "pick", "31"), ("2022-02", "medoid", "28")):
        stem = (
            tmp_path
            / "results"
            / month
            / f"S2_RGBNIR_{month.replace('-', '_')}_01_to_{month.replace('-', '_')}_{last}"
        )
        with rasterio.open(f"{stem}.tif") as src:
            mosaic, crs, transform = src.read(), src.crs, src.transform
        with rasterio.open(f"{stem}_count.tif") as src:
            count = src.read(1)
        with rasterio.open(f"{stem}_date.tif") as src:
            days = src.read(1)
            assert src.dtypes[0] == "uint8" and src.nodata == 255
            assert src.descriptions == (f"acquisition day (days since {month}-01)",)
        expected, expected_count, expected_days, ties = reference_dated(
            world, month, crs, transform, mosaic.shape[1:], method
        )
        print(f"{method} {month}: {int(ties.sum())} tie pixels of {ties.size} left out")
        assert ties.sum() < 0.005 * ties.size
        np.testing.assert_array_equal(count[~ties], expected_count[~ties])
        np.testing.assert_array_equal(mosaic[:, ~ties], expected[:, ~ties])
        np.testing.assert_array_equal(days[~ties], expected_days[~ties])
        assert_count_within_acquisitions(world, month, count, crs, transform)
        assert (count >= 2).any() and len(np.unique(days[count > 0])) >= 2
        for path in (f"{stem}.tif", f"{stem}_count.tif", f"{stem}_date.tif"):
            assert cog_validate(path, quiet=True)[0], path
        metadata = json.loads((tmp_path / "results" / month / "metadata.json").read_text())
        assert metadata["composite"]["method"] == method
        assert metadata["date_band"]["nodata"] == 255
        assert metadata["date_band"]["day_zero"] == f"{month}-01"
        assert metadata["files"]["date"] == f"{stem.name}_date.tif"
        item = json.loads((tmp_path / "results" / month / "item.json").read_text())
        [band] = item["assets"]["date"]["bands"]
        assert band["nodata"] == 255 and band["data_type"] == "uint8"
        assert item["assets"]["date_picture"]["href"] == f"./{stem.name}_date.svg"
        svg = (stem.parent / f"{stem.name}_date.svg").read_bytes()
        assert b"data:image/png;base64," in svg and f">{last} ".encode() in svg
        assert base64.b64encode(svg)[:200].decode() in report  # the picture, in the report
    assert metadata["composite"].get("pick_index") is None  # medoid ranks by nothing
