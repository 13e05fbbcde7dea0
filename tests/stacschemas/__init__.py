"""Validate STAC documents against the STAC 1.1.0 core schemas and their declared
extensions without network: the schemas come from pystac, pyproj and this folder
(README.md says where each is from), and a `$ref` to anything else fails."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from pathlib import Path

CORE = "https://schemas.stacspec.org/v1.1.0"
HERE = Path(__file__).parent


def validate(document: dict) -> None:
    """Raise jsonschema's ValidationError where `document` breaks a schema it is under."""
    from jsonschema import Draft7Validator

    kind = {"Feature": "item", "Collection": "collection", "Catalog": "catalog"}[document["type"]]
    registry = _registry()
    for uri in [
        f"{CORE}/{kind}-spec/json-schema/{kind}.json",
        *document.get("stac_extensions", []),
    ]:
        Draft7Validator(registry.contents(uri.rstrip("#")), registry=registry).validate(document)


@cache
def _registry():
    import pyproj.datadir
    from referencing import Registry, Resource
    from referencing.exceptions import NoSuchResource

    def offline(uri):
        raise NoSuchResource(ref=uri)

    schemas = files("pystac.validation.jsonschemas")
    documents = {}
    for path in schemas.joinpath("stac-spec/v1.1.0").iterdir():
        if path.name.endswith(".json"):
            stem = path.name.removesuffix(".json")
            spec = stem if stem in ("catalog", "collection") else "item"
            documents[f"{CORE}/{spec}-spec/json-schema/{path.name}"] = json.loads(path.read_text())
    for name in ("Feature", "Geometry"):
        documents[f"https://geojson.org/schema/{name}.json"] = json.loads(
            schemas.joinpath(f"geojson/{name}.json").read_text()
        )
    projjson = Path(pyproj.datadir.get_data_dir()) / "projjson.schema.json"
    extensions = [projjson, *sorted(HERE.glob("*.json"))]
    for path in extensions:
        document = json.loads(path.read_text())
        documents[document["$id"].rstrip("#")] = document
    resources = ((uri, Resource.from_contents(doc)) for uri, doc in documents.items())
    return Registry(retrieve=offline).with_resources(resources)
