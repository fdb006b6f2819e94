"""STAC collection templates shipped as package data (title, description, providers, licence,
keywords, summaries of each collection imalys-stac catalogues).

They are read with :mod:`importlib.resources`, so a wheel, a non-editable install or the container
image finds them exactly as a checkout does. The repository's top-level ``catalogs/`` folder holds
links to these files for readers who browse the repository.
"""
from __future__ import annotations

import json
from importlib import resources
from typing import Any


def template_names() -> list[str]:
    """Collection ids that have a template."""
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".json"))


def collection_template(collection_id: str) -> dict[str, Any] | None:
    """The template of ``collection_id`` as a fresh dict, or None when the package has none."""
    f = resources.files(__name__) / f"{collection_id}.json"
    if not f.is_file():
        return None
    return json.loads(f.read_text(encoding="utf-8"))
