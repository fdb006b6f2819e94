"""Offline STAC validation for the tests, against the schema copies in ``tests/schemas/``.

Adapted from the project's shared tool ``validate_stac.py`` (same approach: every schema is
registered by its path-derived URL and its ``$id``, and a ``referencing`` registry without a
retrieve callable never touches the network).
"""
from __future__ import annotations

import json
from functools import cache, lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

SCHEMAS = Path(__file__).parent / "schemas"
CORE = {"Feature": "item", "Catalog": "catalog", "Collection": "collection"}
LINK_RELS = {"root", "parent", "child", "item", "collection"}


def _norm(uri: str) -> str:
    parts = urlsplit(uri.strip())
    return f"https://{parts.netloc}{parts.path}"


@lru_cache(maxsize=1)
def _registry() -> tuple[Registry, frozenset[str]]:
    resources: dict[str, Resource] = {}
    for path in sorted(SCHEMAS.rglob("*.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        res = Resource.from_contents(contents, default_specification=DRAFT7)
        resources["https://" + path.relative_to(SCHEMAS).as_posix()] = res
        sid = contents.get("$id") if isinstance(contents, dict) else None
        if sid:
            resources.setdefault(sid.rstrip("#"), res)
            resources.setdefault(_norm(sid), res)
    return Registry().with_resources(resources.items()), frozenset(resources)


@cache
def _validator(uri: str):
    registry, known = _registry()
    key = _norm(uri)
    if key not in known:
        raise LookupError(f"schema not available offline: {uri}")
    schema = registry.contents(key)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema, registry=registry)


def errors(obj: dict) -> list[str]:
    """Schema errors of one STAC object (core schema + every declared extension)."""
    kind = CORE[obj["type"]]
    ver = str(obj["stac_version"]).lstrip("v")
    uris = [f"https://schemas.stacspec.org/v{ver}/{kind}-spec/json-schema/{kind}.json"]
    uris += list(obj.get("stac_extensions") or [])
    out = []
    for uri in uris:
        try:
            v = _validator(uri)
        except LookupError as e:
            out.append(str(e))
            continue
        for e in sorted(v.iter_errors(obj), key=lambda e: list(e.absolute_path))[:5]:
            best = jsonschema.exceptions.best_match([e])
            loc = "/".join(str(p) for p in best.absolute_path) or "<root>"
            out.append(f"{uri}: at {loc}: {best.message[:300]}")
    return out


def link_errors(path: Path, obj: dict) -> list[str]:
    out = []
    for link in obj.get("links") or []:
        href, rel = link.get("href", ""), link.get("rel")
        if rel not in LINK_RELS or not href or urlsplit(href).scheme:
            continue
        if Path(href).is_absolute():
            out.append(f"absolute {rel} link: {href}")
            continue
        if not (path.parent / href.split("#")[0]).resolve().is_file():
            out.append(f"broken {rel} link: {href}")
    return out


def validate_tree(folder: Path) -> tuple[int, list[str]]:
    """Validate every STAC JSON file under ``folder``; return (count validated, problems)."""
    n, problems = 0, []
    for f in sorted(Path(folder).rglob("*.json")):
        doc = json.loads(f.read_text(encoding="utf-8"))
        if not (isinstance(doc, dict) and doc.get("type") in CORE and "stac_version" in doc):
            continue
        n += 1
        problems += [f"{f}: {m}" for m in errors(doc) + link_errors(f, doc)]
    return n, problems
