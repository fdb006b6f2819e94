"""USGS Collection 2 Level-2 metadata members: MTL (ODL text, XML, JSON) and ANG.txt.

One ordered document is rendered three ways, with the layouts of the real files: ODL with
two-space indentation, quoted strings and bare numbers/dates, ending in ``END``; XML with the
same tree; JSON on one line where every value is a string (as USGS writes it).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from xml.sax.saxutils import escape


@dataclass(frozen=True)
class Q:
    """A quoted ODL string value."""

    text: str


Value = Q | str  # str: written bare (numbers, dates)
Doc = dict[str, dict[str, Value]]  # group -> key -> value, in order

ROOT = "LANDSAT_METADATA_FILE"


def _text(v: Value) -> str:
    return v.text if isinstance(v, Q) else v


def to_odl(doc: Doc, root: str | None = ROOT) -> str:
    """ODL text; ``root=None`` writes the groups at top level (ANG.txt layout)."""
    lines: list[str] = []
    pad = "  " if root else ""
    if root:
        lines.append(f"GROUP = {root}")
    for group, entries in doc.items():
        lines.append(f"{pad}GROUP = {group}")
        for key, v in entries.items():
            lines.append(f'{pad}  {key} = "{v.text}"' if isinstance(v, Q) else f"{pad}  {key} = {v}")
        lines.append(f"{pad}END_GROUP = {group}")
    if root:
        lines.append(f"END_GROUP = {root}")
    lines.append("END")
    return "\n".join(lines) + "\n"


def to_xml(doc: Doc) -> str:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', f"<{ROOT}>"]
    for group, entries in doc.items():
        lines.append(f"  <{group}>")
        for key, v in entries.items():
            lines.append(f"    <{key}>{escape(_text(v))}</{key}>")
        lines.append(f"  </{group}>")
    lines.append(f"</{ROOT}>")
    return "\n".join(lines) + "\n"


def to_json(doc: Doc) -> str:
    return json.dumps({ROOT: {g: {k: _text(v) for k, v in e.items()} for g, e in doc.items()}})


def odl_list(values: list[float], fmt: str = "{:12.6f}") -> str:
    """A parenthesised ODL list as ANG.txt writes it."""
    return "(" + ", ".join(fmt.format(v) for v in values) + ")"
