"""Cloud-free monthly Sentinel-2 mosaics: the logic behind the Snakemake workflow."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("s2basemap")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
