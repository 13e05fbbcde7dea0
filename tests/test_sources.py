"""Planetary Computer as a source: its item shape, signed reads and renewed signatures.

A world of this module's own in Planetary Computer's shape, served as PC serves
it: a STAC API of its own, blob storage that refuses requests without a valid
signature (HTTP 403), and the SAS token endpoint, all on 127.0.0.1. The asset
hrefs name the real storage host, as PC's do, so that the planetary-computer
SDK signs them; the test's HTTP proxy (http_proxy) carries them to the loopback
storage. The SDK's token endpoint is set through PC_SDK_SAS_URL.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import rasterio

from conftest import run_snakemake, world_config
from s2basemap.aoi import read_aoi
from s2basemap.fetch import FetchOptions, fetch_scene
from s2basemap.signing import PlanetaryComputerSigner
from test_fetch import reference
from test_products import PERCENTILE, reference_mosaic
from testworld import served_world
from testworld.build import PC_ASSETS, build_pc_world
from testworld.servers import StacServer, TokenServer

FAST = FetchOptions(retries=2, backoff_seconds=0.05, timeout_seconds=20)
SECRET_KEY = "pc-subscription-key-never-logged"


@pytest.fixture(scope="module")
def pc(tmp_path_factory):
    root = tmp_path_factory.mktemp("pc-world")
    with served_world(root) as (world, storage, _, _):
        files, kept = build_pc_world(world)
        stac = StacServer(files, root / "rustac-pc.log").wait_ready()
        tokens = TokenServer(storage).start()
        storage.require_signatures()
        env = {
            "http_proxy": storage.url,
            "no_proxy": "127.0.0.1,localhost",
            "PC_SDK_SAS_URL": tokens.url,
            "PC_SDK_SUBSCRIPTION_KEY": SECRET_KEY,
        }
        try:
            yield world, storage, stac, tokens, kept, env
        finally:
            tokens.stop()
            stac.stop()


@pytest.fixture
def pc_env(pc, monkeypatch):
    """The module's environment in this process, and a fresh SDK: no cached settings or tokens."""
    from planetary_computer import sas, settings

    for key, value in pc[5].items():
        monkeypatch.setenv(key, value)
    settings.Settings.get.cache_clear()
    sas.TOKEN_CACHE.clear()
    yield pc
    settings.Settings.get.cache_clear()
    sas.TOKEN_CACHE.clear()


def spec_of(world, scene) -> dict:
    items = json.loads((world.root / "stac-pc" / "items.json").read_text())["features"]
    item = next(i for i in items if i["id"] == scene.id)
    return {
        "id": scene.id,
        "assets": {band: item["assets"][key]["href"] for band, key in PC_ASSETS.items()},
        "offset": {"dn": -1000, "source": "metadata", "reason": "test"},
    }


def test_an_unsigned_read_is_refused_by_name(pc_env, tmp_path):
    world, _, _, _, kept, _ = pc_env
    record = fetch_scene(
        spec_of(world, kept[0]), read_aoi(world.aoi_gpkg), tmp_path / "s.tif", FAST
    )
    assert record["status"] == "failed" and record["attempts"] == 1
    assert "HTTP response code: 403" in record["reason"]
    assert (
        "the URL is unsigned: does the source need signed URLs? See stac.source" in record["reason"]
    )


def test_a_signature_that_expires_mid_fetch_is_renewed_and_the_scene_completes(pc_env, tmp_path):
    world, storage, _, tokens, kept, _ = pc_env
    # the first token is good for the five headers and a few reads, then storage refuses it
    tokens.uses_per_token = [None] * len(tokens.paths) + [8]
    issued = len(tokens.paths)
    scene = kept[0]
    record = fetch_scene(
        spec_of(world, scene),
        read_aoi(world.aoi_gpkg),
        tmp_path / "s.tif",
        FAST,
        signer=PlanetaryComputerSigner(),
    )
    assert record["status"] == "ok" and record["attempts"] == 2
    assert len(tokens.paths) - issued == 2  # signed, refused mid-read, signed again
    assert storage.faults["refused"] >= 1
    assert tokens.keys[-1] == SECRET_KEY  # the subscription key went to the token endpoint
    expected, src_transform, _ = reference(world, scene, world.aoi_gpkg, -1000)
    with rasterio.open(tmp_path / "s.tif") as out:
        col = int((out.transform.c - src_transform.c) / 10)
        row = int((src_transform.f - out.transform.f) / 10)
        np.testing.assert_array_equal(
            out.read(), expected[:, row : row + out.height, col : col + out.width]
        )


def test_a_planetary_computer_month_equals_the_numpy_reference(pc, tmp_path):
    world, _, stac, tokens, kept, env = pc
    config = world_config(
        world,
        scenario="planetary-computer",
        values={"stac_url": stac.url},
        months=["2022-02"],
        composite={"percentile": PERCENTILE},
    )
    run_snakemake(tmp_path, config, env=env)
    manifest = json.loads((tmp_path / "work/2022-02/manifest.json").read_text())
    assert sorted(s["id"] for s in manifest["scenes"]) == sorted(s.id for s in kept)
    assert [d["reason"] for d in manifest["duplicates_removed"]] == [
        f"duplicate of {kept[0].id} (older)"
    ]
    assert all(s["offset"]["dn"] == -1000 for s in manifest["scenes"])
    # manifests keep unsigned hrefs: a search finding the same items writes the same file
    assert "sig=" not in json.dumps(manifest)
    with rasterio.open(tmp_path / "results/2022-02/S2_RGBNIR_2022_02_01_to_2022_02_28.tif") as src:
        mosaic, crs, transform = src.read(), src.crs, src.transform
    expected, _, ties = reference_mosaic(world, "2022-02", crs, transform, mosaic.shape[1:], kept)
    assert ties.sum() < 0.005 * ties.size and (mosaic[0] > 0).mean() > 0.5
    np.testing.assert_array_equal(mosaic[:, ~ties], expected[:, ~ties])
    # the subscription key reached the token endpoint and nothing the run wrote
    assert SECRET_KEY in tokens.keys
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET_KEY.encode() not in path.read_bytes(), path
    # new tokens, same manifest: nothing to redo
    again = run_snakemake(tmp_path, config, "-n", env=env)
    assert "Nothing to be done" in again.stdout + again.stderr
    assert (
        os.environ.get("PC_SDK_SUBSCRIPTION_KEY") != SECRET_KEY
    )  # the module's env stayed its own
