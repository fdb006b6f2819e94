"""Path values: ``~``/environment expansion and archive name resolution (no raster libraries)."""
from __future__ import annotations

import glob
import os
import re
from pathlib import Path

from .errors import ChainError

_ENV_LEFT = re.compile(r"\$(\w+|\{[^}]*\})")
_WILDCARD = re.compile(r"[*?\[]")


def expand_path_text(text: str) -> str:
    """Expand ``~`` and ``$VAR``/``${VAR}``; an environment variable that is not set is an error.

    Chain variables ``$1``..``$9`` must already be substituted (they look like ``$VAR`` too).
    """
    expanded = os.path.expanduser(os.path.expandvars(text))
    left = _ENV_LEFT.search(expanded)
    if left:
        raise ValueError(
            f"${left.group(1)} is neither a chain variable ($1 … $9) nor a set environment variable"
        )
    return expanded


def has_wildcard(text: str) -> bool:
    """True when ``text`` holds a glob wildcard (``*``, ``?`` or ``[...]``)."""
    return bool(_WILDCARD.search(text))


def _split_name(name: str) -> tuple[str, str]:
    """``LC08_..._20220515.tar.gz`` → (``LC08_..._20220515``, ``.tar.gz``): provider names hold no dots."""
    stem, dot, ext = name.partition(".")
    return stem, (dot + ext)


def resolve_archive_pattern(pattern: str | os.PathLike[str]) -> list[Path]:
    """The existing files a `select` value names, sorted.

    * a pattern with wildcards → every match;
    * an existing path → itself;
    * otherwise the tutorial's *short name*: ``.../LC08_L2SP_193026_20220515.tar`` stands for
      ``.../LC08_L2SP_193026_20220515_*.tar`` (USGS names carry two more fields) when exactly one
      file matches. Several matches are ambiguous → :class:`ChainError` listing them.

    Returns ``[]`` when nothing matches. ``~`` and environment variables are expanded.
    """
    text = expand_path_text(os.fspath(pattern))
    if has_wildcard(text):
        return sorted(Path(p) for p in glob.glob(text) if os.path.exists(p))
    path = Path(text)
    if path.exists():
        return [path]
    stem, ext = _split_name(path.name)
    if not stem:
        return []
    candidates = sorted(
        Path(p) for p in glob.glob(os.path.join(glob.escape(str(path.parent)), glob.escape(stem) + "_*" + glob.escape(ext)))
        if os.path.isfile(p)
    )
    if len(candidates) > 1:
        names = ", ".join(c.name for c in candidates)
        raise ChainError(
            f"select = {pattern}", parameter="select",
            hint=f"the short name matches {len(candidates)} archives ({names}); give the full file name",
        )
    return candidates
