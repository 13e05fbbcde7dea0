"""One listing of the run's objects instead of three requests per file, on S3 storage.

Snakemake asks a storage plugin for an inventory before it checks files one by one:
the plugin lists what it can and files it in Snakemake's IO cache, and every file
whose parent is marked as listed is then answered from the cache. The S3 plugin
(snakemake-storage-plugin-s3 0.3.6) lists only the first file's folder and marks the
bucket with an ordinary cache entry, which Snakemake's cache does not read as
"listed"; every other file still costs a HEAD of the object, a HEAD of the bucket and
a LIST (whether it is a folder). An Arkansas month's DAG build made 7,523 requests
that way (tests/benchmarks/scale.py --s3).

`install_s3_inventory(prefix)` gives the plugin's objects under the run's prefix an
inventory that lists that prefix once (1,000 keys a request) and marks it listed. The
run's files are all under the default storage prefix; other objects keep the
plugin's own behaviour. Guarded: if the plugin's internals move, nothing is patched.
"""

from __future__ import annotations

from urllib.parse import urlparse


def run_prefix(storage_prefix: str) -> tuple[str, str] | None:
    """(bucket, key prefix ending in "/") of an `s3://bucket/prefix` default storage prefix."""
    parsed = urlparse(storage_prefix)
    if parsed.scheme != "s3" or not parsed.netloc:
        return None
    key = parsed.path.strip("/")
    return parsed.netloc, f"{key}/" if key else ""


def install_s3_inventory(storage_prefix: str) -> bool:
    """Patch the S3 plugin's inventory for the run's prefix; whether it was patched."""
    located = run_prefix(storage_prefix)
    try:
        from snakemake.io import ExistsDict
        from snakemake_interface_storage_plugins.io import Mtime
        from snakemake_storage_plugin_s3 import StorageObject
    except ImportError:
        return False
    needed = ("inventory", "get_inventory_parent", "cache_key", "s3bucket", "bucket_exists")
    if (
        located is None
        or not all(hasattr(StorageObject, name) for name in needed)
        or not hasattr(ExistsDict(None), "has_inventory")
    ):
        return False
    bucket, prefix = located
    plugin_inventory = StorageObject.inventory
    plugin_parent = StorageObject.get_inventory_parent

    def in_run(obj) -> bool:
        return getattr(obj, "bucket", None) == bucket and obj.key.startswith(prefix)

    def get_inventory_parent(self):
        if in_run(self):
            return self.cache_key(f"{bucket}/{prefix}")
        return plugin_parent(self)

    async def inventory(self, cache):
        if not in_run(self):
            return await plugin_inventory(self, cache)
        listed = cache.exists_in_storage.has_inventory
        parent = self.get_inventory_parent()
        if parent in listed:
            return
        if self.bucket_exists():
            for item in self.s3bucket().objects.filter(Prefix=prefix):
                key = self.cache_key(f"{bucket}/{item.key}")
                cache.mtime[key] = Mtime(storage=item.last_modified.timestamp())
                cache.size[key] = item.size
                cache.exists_in_storage[key] = True
        # every object under the prefix is now known: any other one does not exist
        listed.add(parent)

    StorageObject.get_inventory_parent = get_inventory_parent
    StorageObject.inventory = inventory
    return True
