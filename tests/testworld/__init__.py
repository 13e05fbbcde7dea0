"""The offline test world: synthetic Sentinel-2 scenes served from 127.0.0.1."""

from testworld.build import World, build_world
from testworld.servers import RangeServer, StacServer

__all__ = ["World", "build_world", "RangeServer", "StacServer"]
