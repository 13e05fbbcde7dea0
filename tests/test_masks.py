"""Per-scene masks: the real OmniCloudMask code with fabricated weights, SCL and nodata."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from scipy.ndimage import binary_dilation

from s2basemap.aoi import read_aoi
from s2basemap.fetch import FetchOptions, fetch_scene
from s2basemap.masks import (
    MODES,
    SCL_CLOUD_AND_SHADOW,
    MaskOptions,
    combine,
    combine_counted,
    mask_scene,
)
from s2basemap.masktags import DILATED, NODATA, OCM_CLOUD, SCL_INVALID, mask_usability
from s2basemap.ocm import (
    OCMOptions,
    WeightsMissingError,
    check_weights,
    download_weights,
    predict,
    to_inference_grid,
    to_scene_grid,
)
from s2basemap.search import BANDS

SCL_INVALID_DEFAULT = (1, 3, 8, 9, 10, 11)


@pytest.fixture(scope="session")
def fetched(world, tmp_path_factory):
    """A fetched test-world scene (offset item, clouds, shadows and a nodata edge)."""
    scene = world.scene("S2A_15SYU_20220128_0_L2A")
    tif = tmp_path_factory.mktemp("fetched") / "scene.tif"
    spec = {
        "id": scene.id,
        "assets": {b: world.url(scene.path(b)) for b in BANDS},
        "offset": {"dn": -1000, "source": "metadata", "reason": "test"},
    }
    record = fetch_scene(spec, read_aoi(world.aoi_gpkg), tif, FetchOptions(retries=0))
    with rasterio.open(tif) as src:
        stack = src.read()
    return tif, record, stack


def options(mode="ocm+scl", weights_dir=None, dilation=0.0, **ocm):
    return MaskOptions(
        mode=mode,
        scl_invalid=SCL_INVALID_DEFAULT,
        dilation_metres=dilation,
        ocm=OCMOptions(weights_dir=str(weights_dir), **ocm),
    )


def reference_invalid(stack, scl_invalid=SCL_INVALID_DEFAULT):
    """Invalid = SCL class in the set OR nodata in any band (SCL included)."""
    return np.isin(stack[4], scl_invalid) | (stack == 0).any(axis=0)


def run_mask(fetched, tmp_path, opts):
    tif, record, _ = fetched
    stats = mask_scene(tif, record, tmp_path / "mask.tif", opts)
    with rasterio.open(tmp_path / "mask.tif") as src:
        return src.read(1), stats


def test_always_cloud_weights_make_every_pixel_invalid(fetched, weights, tmp_path):
    mask, stats = run_mask(fetched, tmp_path, options(weights_dir=weights["cloud"]))
    _, _, stack = fetched
    data = ~(stack == 0).any(axis=0)
    assert (mask != 0).all()
    assert ((mask[data] & OCM_CLOUD) != 0).all()  # the model's verdict reached every data pixel
    # what a composite job reads of it: the scene, usable (a cloudy scene is still usable)
    assert mask_usability(tmp_path / "mask.tif") == (fetched[1]["id"], "ok")
    assert stats["valid_pixels"] == 0 and stats["cloud_fraction"] == 1.0
    assert stats["ocm"]["device"] == "cpu" and stats["ocm"]["dtype"] == "float32"


def test_always_clear_weights_leave_exactly_the_scl_and_nodata_mask(fetched, weights, tmp_path):
    mask, stats = run_mask(fetched, tmp_path, options(weights_dir=weights["clear"]))
    _, record, stack = fetched
    expected = reference_invalid(stack)
    np.testing.assert_array_equal(mask != 0, expected)
    assert not (mask & OCM_CLOUD).any()
    assert 0 < stats["valid_pixels"] == int((~expected).sum())
    assert stats["valid_fraction"] == pytest.approx(
        (~expected).sum() / record["aoi_pixels"], abs=1e-6
    )


def test_scl_mode_matches_the_worlds_known_scl(world, fetched, tmp_path):
    """Exact expectation from the source files: SCL at 20 m repeated to 10 m, bands at 10 m."""
    mask, stats = run_mask(fetched, tmp_path, options(mode="scl", weights_dir=tmp_path / "none"))
    tif, record, _ = fetched
    scene = world.scene(record["id"])
    with rasterio.open(tif) as out, rasterio.open(scene.path("red")) as red:
        col = int((out.transform.c - red.transform.c) / 10)
        row = int((red.transform.f - out.transform.f) / 10)
        height, width = out.shape
    window = (slice(row, row + height), slice(col, col + width))
    with rasterio.open(scene.path("scl")) as src:
        scl = src.read(1).repeat(2, 0).repeat(2, 1)[window]
    nodata = np.zeros((height, width), dtype=bool)
    for band in BANDS[:4]:
        with rasterio.open(scene.path(band)) as src:
            nodata |= src.read(1)[window] == 0
    _, _, stack = fetched
    outside_aoi = (stack == 0).all(axis=0) & (scl > 0)  # cleared by the AOI clip
    expected = np.isin(scl, SCL_INVALID_DEFAULT) | nodata | (scl == 0) | outside_aoi
    np.testing.assert_array_equal(mask != 0, expected)
    assert ((mask & SCL_INVALID) != 0).sum() == (
        np.isin(scl, SCL_INVALID_DEFAULT) & ~outside_aoi
    ).sum()
    assert "ocm" not in stats


def test_dilation_grows_cloud_by_the_configured_distance(fetched, tmp_path):
    mask, _ = run_mask(fetched, tmp_path, options(mode="scl", weights_dir=tmp_path, dilation=50.0))
    _, _, stack = fetched
    cloud = np.isin(stack[4], (3, 8, 9, 10))
    radius = 5  # 50 m at 10 m pixels
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = yy**2 + xx**2 <= radius**2
    grown = binary_dilation(cloud, structure=disk)
    np.testing.assert_array_equal((mask & DILATED) != 0, grown & ~cloud)
    assert ((mask & DILATED) != 0).sum() > 0


def test_combine_sets_one_bit_per_reason():
    bands = np.full((4, 3, 3), 500, dtype=np.uint16)
    bands[2, 0, 0] = 0
    scl = np.array([[4, 9, 4], [4, 4, 11], [0, 4, 4]], dtype=np.uint16)
    ocm = np.zeros((3, 3), dtype=np.uint8)
    ocm[1, 1] = 3
    mask = combine(bands, scl, ocm, options(), pixel_size=10)
    assert mask.tolist() == [[NODATA, SCL_INVALID, 0], [0, OCM_CLOUD, SCL_INVALID], [NODATA, 0, 0]]
    only_ocm = combine(bands, scl, ocm, options(mode="ocm"), pixel_size=10)
    assert only_ocm.tolist() == [[NODATA, 0, 0], [0, OCM_CLOUD, 0], [NODATA, 0, 0]]


def test_inference_grid_averages_valid_pixels_and_never_upsamples():
    rng = np.random.default_rng(1)
    bands = rng.integers(1, 4000, (3, 70, 67)).astype(np.uint16)
    bands[:, 10:14, 20:22] = 0
    low = to_inference_grid(bands, 2)
    assert low.shape == (3, 35, 34)  # 67 px -> 34 blocks (the last one half nodata)
    for b, r, c in [(0, 0, 0), (1, 5, 10), (2, 34, 33), (0, 6, 10)]:
        block = bands[b, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2].astype(float)
        valid = block[block > 0]
        assert low[b, r, c] == pytest.approx(valid.mean() if valid.size else 0.0, rel=1e-6)
    assert low[0, 5, 10] == 0  # an all-nodata block stays nodata
    small = to_inference_grid(bands[:, :20, :20], 2)
    assert small.shape == (3, 32, 32)  # padded up to the model's minimum edge
    classes = np.arange(6, dtype=np.uint8).reshape(2, 3)
    back = to_scene_grid(classes, 2, (3, 5))
    assert back.tolist() == [[0, 0, 1, 1, 2], [0, 0, 1, 1, 2], [3, 3, 4, 4, 5]]


def within_distance(region, metres, pixel_size):
    """Every pixel whose centre lies within `metres` of a region pixel's centre, from
    its distance to each region pixel in turn (a disk, not a square)."""
    region_rows, region_cols = np.nonzero(region)
    cols = np.arange(region.shape[1])[:, None]
    near = np.zeros(region.shape, dtype=bool)
    for row in range(region.shape[0]):
        squared = ((row - region_rows) ** 2 + (cols - region_cols) ** 2) * pixel_size**2
        near[row] = (squared <= metres**2).any(axis=1)
    return near


def numpy_combine(bands, scl, ocm, opts, pixel_size):
    """The mask as whole-array numpy passes (the kernel's reference; `ocm` on the 10 m grid),
    with the dilation by brute force."""
    mask = np.zeros(scl.shape, dtype=np.uint8)
    mask[(bands == 0).any(axis=0) | (scl == 0)] |= NODATA
    cloud = np.zeros(scl.shape, dtype=bool)
    if opts.uses_scl:
        mask[np.isin(scl, opts.scl_invalid)] |= SCL_INVALID
        cloud |= np.isin(scl, [c for c in SCL_CLOUD_AND_SHADOW if c in opts.scl_invalid])
    if opts.uses_ocm:
        mask[ocm > 0] |= OCM_CLOUD
        cloud |= ocm > 0
    if opts.dilation_metres > 0 and cloud.any():
        mask[within_distance(cloud, opts.dilation_metres, pixel_size) & ~cloud] |= DILATED
    counted = np.zeros(scl.shape, dtype=bool)
    if opts.uses_scl:
        counted |= np.isin(scl, SCL_CLOUD_AND_SHADOW)
    if opts.uses_ocm:
        counted |= ocm > 0
    data = (mask & NODATA) == 0
    counts = {"data": data.sum(), "valid": (mask == 0).sum(), "cloud": (counted & data).sum()}
    return mask, counts


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("factor", "dilation"), [(1, 0.0), (2, 0.0), (3, 30.0), (5, 0.0), (1, 25.0)]
)
def test_combine_kernel_equals_the_numpy_passes(mode, factor, dilation):
    rng = np.random.default_rng(factor)
    height, width = 67, 83  # not whole blocks of the coarse grid
    bands = rng.integers(1, 4000, (4, height, width)).astype(np.uint16)
    bands[rng.random(bands.shape) < 0.03] = 0
    # mostly clear land, every class somewhere; a coarse grid larger than needed, as padded
    scl = np.where(rng.random((height, width)) < 0.9, 4, rng.integers(0, 12, (height, width)))
    scl = scl.astype(np.uint16)
    shape = (-(-height // factor) + 1, -(-width // factor) + 2)
    coarse = np.where(rng.random(shape) < 0.9, 0, rng.integers(1, 4, shape)).astype(np.uint8)
    opts = options(mode=mode, dilation=dilation)
    mask, counts = combine_counted(bands, scl, coarse, opts, 10.0, factor)
    # each coarse class over its factor x factor block of the scene grid, cropped
    fine = np.kron(coarse, np.ones((factor, factor), dtype=coarse.dtype))[:height, :width]
    expected, expected_counts = numpy_combine(bands, scl, fine, opts, 10.0)
    np.testing.assert_array_equal(mask, expected)
    assert counts == {k: int(v) for k, v in expected_counts.items()}
    assert 0 < counts["valid"] < counts["data"] < scl.size


def test_kernels_run_from_several_threads_at_once():
    # the shared model process runs several scenes' host work in threads of its own
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(7)
    stacks = [rng.integers(0, 3000, (5, 300, 280)).astype(np.uint16) for _ in range(6)]

    def host_work(stack):
        low = to_inference_grid(stack, 2, channels=(2, 1, 3))
        classes = (low[0] > 1500).astype(np.uint8)
        return low, combine_counted(stack[:4], stack[4], classes, options(), 10.0, 2)

    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(host_work, stacks))
    for stack, (low, (mask, counts)) in zip(stacks, together, strict=True):
        alone_low, (alone_mask, alone_counts) = host_work(stack)
        assert low.tobytes() == alone_low.tobytes()
        np.testing.assert_array_equal(mask, alone_mask)
        assert counts == alone_counts


def numpy_block_means(bands, factor):
    """Block means ignoring zeros as factor^2 strided float32 sums (the kernel's reference)."""
    _, height, width = bands.shape
    rows, cols = max(-(-height // factor), 32), max(-(-width // factor), 32)
    padded = np.zeros((bands.shape[0], rows * factor, cols * factor), dtype=bands.dtype)
    padded[:, :height, :width] = bands
    total = np.zeros((bands.shape[0], rows, cols), dtype=np.float32)
    valid = np.zeros_like(total)
    for i in range(factor):
        for j in range(factor):
            view = padded[:, i::factor, j::factor]
            total += view
            valid += view > 0
    return np.divide(total, valid, out=np.zeros_like(total), where=valid > 0)


@pytest.mark.parametrize("factor", [2, 3, 5])
def test_block_means_equal_numpys_bit_for_bit(factor):
    rng = np.random.default_rng(factor)
    stack = rng.integers(0, 65535, (5, 171, 203)).astype(np.uint16)
    stack[:, rng.random((171, 203)) < 0.2] = 0
    low = to_inference_grid(stack, factor, channels=(2, 1, 3))
    expected = numpy_block_means(stack[[2, 1, 3]], factor)
    assert low.dtype == np.float32 and low.shape == expected.shape
    assert low.tobytes() == expected.tobytes()


@pytest.mark.parametrize(
    ("length", "expected"), [(2000, 734), (5490, 999), (800, 800), (1000, 1000), (1001, 551)]
)
def test_patches_fit_the_image(length, expected):
    from s2basemap.ocm import fitted_patch_size

    size = fitted_patch_size((3, length, 300), 1000, 100)
    assert size == expected
    count = -(-(length - 100) // (size - 100)) if length > size else 1
    assert count == (
        -(-(length - 100) // 900) if length > 1000 else 1
    )  # no more patches than before


class OutOfMemoryAboveBatch(torch.nn.Module):
    """Wraps a model and raises torch's out-of-memory error for batches above `limit`,
    as a GPU would; there is no GPU here to exhaust."""

    def __init__(self, model, limit):
        super().__init__()
        self.model, self.limit, self.seen = model, limit, []

    def forward(self, x):
        self.seen.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.model(x)


def test_out_of_memory_halves_the_batch_and_logs_it(weights, caplog):
    from omnicloudmask.model_utils import load_model_from_weights

    from s2basemap.ocm import weight_paths

    path = weight_paths(weights["cloud"], 4.0)[0]  # the regnety_004 file
    inner = load_model_from_weights("tu-regnety_004", path, "smp", torch.device("cpu"))
    guarded = OutOfMemoryAboveBatch(inner, limit=1)
    array = np.random.default_rng(2).integers(1, 3000, (3, 400, 400)).astype(np.uint16)
    opts = OCMOptions(inference_resolution=10, batch_size=4, patch_size=100, patch_overlap=20)
    classes, info = predict(array, opts, models=[guarded])
    assert (classes == 1).all()  # a complete, correct mask after the fallback
    assert info.batch_size == 1 and len(info.fallbacks) == 2
    assert "retrying with 2" in caplog.text and "retrying with 1" in caplog.text
    assert max(guarded.seen) == 4 and guarded.seen[-1] == 1


def test_missing_weights_say_how_to_stage_them(tmp_path):
    with pytest.raises(WeightsMissingError) as excinfo:
        check_weights(tmp_path / "nothing-here", 4.0)
    message = str(excinfo.value)
    assert "snakemake ocm_weights" in message and "PM_model_OCM_7.97" in message


def test_offline_download_fails_fast_with_instructions(tmp_path, monkeypatch):
    """Fast by what the code asks for, not by a clock: the probe is the one request, it
    carries the short timeout, and the downloader (60 s a request) is never reached."""
    import inspect
    import urllib.request

    import omnicloudmask.download_models

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # nor in omnicloudmask's directory
    probes = []
    real_urlopen = urllib.request.urlopen

    def urlopen(*args, **kwargs):
        asked = inspect.signature(real_urlopen).bind(*args, **kwargs).arguments
        probes.append((asked["url"].full_url, asked.get("timeout")))
        return real_urlopen(*args, **kwargs)

    def get_models(*args, **kwargs):
        raise AssertionError("the downloader ran after the probe failed")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(omnicloudmask.download_models, "get_models", get_models)
    with pytest.raises(WeightsMissingError, match="cannot reach the model hub") as excinfo:
        download_weights(tmp_path / "w", 4.0, probe_timeout=5)
    assert probes == [("http://127.0.0.1:9", 5)]
    assert "http://127.0.0.1:9" in str(excinfo.value) and "snakemake ocm_weights" in str(
        excinfo.value
    )
    assert not any((tmp_path / "w").glob("*.safetensors"))


def test_placeholder_scene_gets_an_all_nodata_mask(tmp_path, weights):
    from s2basemap.fetch import write_placeholder

    write_placeholder(tmp_path / "s.tif", "failed")
    record = {"id": "x", "status": "failed", "reason": "HTTP 404"}
    stats = mask_scene(
        tmp_path / "s.tif", record, tmp_path / "m.tif", options(weights_dir=weights["cloud"])
    )
    assert stats["status"] == "skipped" and "HTTP 404" in stats["reason"]
    with rasterio.open(tmp_path / "m.tif") as src:
        assert (src.read(1) == NODATA).all()


def test_the_mask_modules_stand_in_a_line():
    """The mask's bits live in masktags, below every module that reads them: the kernels
    no longer import the module that imports them (the package's only import circle)."""
    from s2basemap.provenance import _imported_modules, _module_path

    line = ["masktags", "maskkernels", "ocm", "masks", "fusion", "composite"]
    for i, name in enumerate(line):
        imported = _imported_modules(_module_path(name).read_text())
        # no module imports one that sits above it in the line, at any depth of its file
        assert not imported & set(line[i + 1 :]), (name, imported & set(line[i + 1 :]))
