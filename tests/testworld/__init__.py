"""The offline test world: synthetic Sentinel-2 scenes served from 127.0.0.1."""

from contextlib import contextmanager

from testworld.build import World, build_world
from testworld.servers import RangeServer, StacServer

__all__ = ["RangeServer", "StacServer", "World", "build_world", "served_world"]


@contextmanager
def served_world(root, extend=None, build=build_world):
    """Build a world in `root` and serve it: (world, http server, STAC server, extend's result).

    `build(root, base_url)` makes the world (the main one by default); `extend(world)`
    runs after the build and before the STAC server loads the items.
    """
    http = RangeServer(root).start()
    world = build(root, http.url)
    extra = extend(world) if extend else None
    stac = StacServer(world.item_files, root / "rustac.log").wait_ready()
    world.stac_url = stac.url
    try:
        yield world, http, stac, extra
    finally:
        stac.stop()
        http.stop()
