"""Parsers for the USGS ODL text metadata (``*_MTL.txt``, ``*_ANG.txt``).

ODL is ``GROUP = NAME`` … ``END_GROUP = NAME`` blocks of ``KEY = VALUE`` lines; values may be
quoted strings, numbers, dates or parenthesised lists that span several lines (ANG.txt).
"""
from __future__ import annotations

import re
from typing import Any

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _value(text: str) -> Any:
    text = text.strip()
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        return text[1:-1]
    if text.startswith("(") and text.endswith(")"):
        return [_value(v) for v in text[1:-1].split(",") if v.strip()]
    if _NUMBER.match(text):
        # keep leading-zero integers ("02") as text: they are codes, not quantities
        if re.fullmatch(r"[+-]?\d+", text) and not (len(text) > 1 and text.lstrip("+-").startswith("0")):
            return int(text)
        if re.fullmatch(r"[+-]?\d+", text):
            return text
        return float(text)
    return text


def parse_odl(text: str) -> dict[str, Any]:
    """Parse ODL text into nested dicts (groups) of values.

    Raises ``ValueError`` on unbalanced groups or lines that are not ``KEY = VALUE``.
    """
    root: dict[str, Any] = {}
    stack: list[dict[str, Any]] = [root]
    names: list[str] = []
    pending_key: str | None = None
    pending: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if pending_key is not None:  # continuation of a multi-line list
            pending.append(line)
            if line.endswith(")"):
                stack[-1][pending_key] = _value(" ".join(pending))
                pending_key, pending = None, []
            continue
        if not line or line == "END":
            continue
        if "=" not in line:
            raise ValueError(f"line {lineno}: expected KEY = VALUE, got {line[:60]!r}")
        key, _, val = (p.strip() for p in line.partition("="))
        if key == "GROUP":
            group: dict[str, Any] = {}
            stack[-1][val] = group
            stack.append(group)
            names.append(val)
        elif key == "END_GROUP":
            if not names or names[-1] != val:
                raise ValueError(f"line {lineno}: END_GROUP {val} does not close {names[-1] if names else 'anything'}")
            stack.pop()
            names.pop()
        elif val.startswith("(") and not val.endswith(")"):
            pending_key, pending = key, [val]
        else:
            stack[-1][key] = _value(val)
    if names or pending_key is not None:
        raise ValueError(f"unterminated group {names[-1] if names else pending_key!r} (truncated file?)")
    return root
