"""Path values: ``~``/environment expansion and archive name resolution (no raster libraries)."""
from __future__ import annotations

import glob
import os
import re
import stat
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
    if "${" in expanded:
        raise ValueError("'${' has no closing '}': write ${NAME} for an environment variable")
    if expanded.startswith("~"):  # expanduser leaves ~name alone when there is no such user
        user = expanded[1:].split("/", 1)[0]
        raise ValueError(f"~{user} is not a user on this machine; for your home folder write ~/{user}")
    return expanded


def _byte_spellings(name: str) -> list[str]:
    """Other names ``name`` may have on disk when its non-ASCII letters were read with another
    encoding than the one the file system uses: a chain saved in Latin-1/cp1252 names
    ``Übersicht`` whose folder is stored as UTF-8, or a UTF-8 chain names a folder whose name
    on disk is a Latin-1 byte (Python shows it as a lone surrogate, e.g. ``'caf\\udce9'``)."""
    found: list[str] = []
    for encoding in ("cp1252", "latin-1"):
        try:
            other = os.fsdecode(name.encode(encoding, "surrogateescape"))
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        if other != name and other not in found:
            found.append(other)
    try:  # the reverse: undecodable bytes in the name that are UTF-8 text in another encoding
        raw = name.encode("utf-8", "surrogateescape")
        for encoding in ("cp1252", "latin-1"):
            try:
                other = raw.decode(encoding)
            except UnicodeDecodeError:
                continue
            if other != name and other not in found:
                found.append(other)
    except UnicodeEncodeError:
        pass
    return found


def on_disk(path: str | os.PathLike[str]) -> Path:
    """``path`` as it is stored, when it exists only under another byte spelling of its
    non-ASCII letters (see :func:`_byte_spellings`); otherwise ``path`` unchanged.

    Walks the path one part at a time, so the folder of a file still to be written is found too.
    """
    path = Path(path)
    if path.as_posix().isascii() or _lexists(path):
        return path
    parts = path.parts
    current = Path(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        candidate = current / part
        if not _lexists(candidate):
            for other in _byte_spellings(part):
                if _lexists(current / other):
                    candidate = current / other
                    break
            else:
                return candidate.joinpath(*parts[i + 1:])
        current = candidate
    return current


def _lexists(path: Path) -> bool:
    try:
        return os.path.lexists(path)
    except (OSError, ValueError):
        return False


def kind_of(path: str | os.PathLike[str]) -> str:
    """``"file"``, ``"folder"``, ``"missing"`` or ``"other"`` (a device, a socket);
    ``ValueError`` naming the reason when the system cannot even look (permission, name too long)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except NotADirectoryError:
        return "missing"
    except ValueError:  # NUL byte
        raise ValueError("the path holds a NUL character") from None
    except OSError as e:
        raise ValueError(f"cannot look at it: {e.strerror or e}") from None
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def path_key(path: str | os.PathLike[str]) -> str:
    """One key per location, for "is this the same file?": two paths have the same key when they
    reach the same place, through a symlinked folder, ``..``, ``./``, a trailing slash, or letters
    in another case on a file system that ignores case. The key is not a path to print.

    The existing part of the path is resolved (:func:`os.path.realpath`) and stands as its
    device and inode; the part that does not exist yet (an export target) follows as text,
    case-folded when the folder it goes into ignores case."""
    real = os.path.realpath(os.path.expanduser(os.fspath(path)))
    tail: list[str] = []
    head = real
    while True:
        try:
            st = os.stat(head)
            break
        except (OSError, ValueError):
            parent, name = os.path.split(head)
            if parent == head:  # nothing of it exists (cannot happen for an absolute path: / exists)
                return real
            tail.append(name)
            head = parent
    rest = "/".join(reversed(tail))
    if rest and _ignores_case(head):
        rest = rest.casefold()
    return f"{st.st_dev}:{st.st_ino}/{rest}"


def _ignores_case(folder: str) -> bool:
    """Whether names in ``folder`` are looked up regardless of case (macOS, Windows shares, vfat):
    the first entry whose name has letters is looked up in swapped case."""
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                swapped = entry.name.swapcase()
                if swapped != entry.name:
                    try:
                        return os.path.samestat(entry.stat(follow_symlinks=False),
                                                os.lstat(os.path.join(folder, swapped)))
                    except OSError:
                        return False
    except OSError:
        pass
    return False


def same_path(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether ``a`` and ``b`` name the same location (see :func:`path_key`)."""
    return path_key(a) == path_key(b)


def catalog_outputs(target: str | os.PathLike[str]) -> set[str]:
    """:func:`path_key` of every path a ``catalog`` with this target makes and a later
    ``import database`` may name: the catalog folder and its ``catalog.json``, and for a ``.csv``
    target the table and the folder beside it of the same name (as ``stac.catalog.catalog_location``)."""
    t = Path(os.path.realpath(os.path.expanduser(os.fspath(target))))
    if t.suffix.lower() == ".csv":
        folder = t.with_suffix("")
        found = [t, folder, folder / "catalog.json"]
    elif t.name == "catalog.json":
        found = [t, t.parent]
    else:
        found = [t, t / "catalog.json"]
    return {path_key(p) for p in found}


def has_wildcard(text: str) -> bool:
    """True when ``text`` holds a glob wildcard (``*``, ``?`` or ``[...]``)."""
    return bool(_WILDCARD.search(text))


def _split_name(name: str) -> tuple[str, str]:
    """``LC08_..._20220515.tar.gz`` → (``LC08_..._20220515``, ``.tar.gz``): provider names hold no dots."""
    stem, dot, ext = name.partition(".")
    return stem, (dot + ext)


def resolve_archive_pattern(pattern: str | os.PathLike[str]) -> list[Path]:
    """The existing files a `select` value names, sorted.

    * a pattern with wildcards → every file it matches (folders are no archives);
    * an existing file → itself (an existing folder → nothing);
    * otherwise the tutorial's *short name*: ``.../LC08_L2SP_193026_20220515.tar`` stands for
      ``.../LC08_L2SP_193026_20220515_*.tar`` (USGS names carry two more fields) when exactly one
      file matches. Several matches are ambiguous → :class:`ChainError` listing them.

    Returns ``[]`` when nothing matches. ``~`` and environment variables are expanded; a name
    stored with another byte spelling of its non-ASCII letters is found (see :func:`on_disk`).
    """
    text = expand_path_text(os.fspath(pattern))
    if has_wildcard(text):
        return _glob_files(text)
    path = on_disk(text)
    if _is_file(path):
        return [path]
    if _lexists(path):  # a folder (or a device) is not an archive
        return []
    stem, ext = _split_name(path.name)
    if not stem:
        return []
    candidates = _glob_files(os.path.join(glob.escape(str(path.parent)), glob.escape(stem) + "_*" + glob.escape(ext)))
    if len(candidates) > 1:
        names = ", ".join(c.name for c in candidates)
        raise ChainError(
            f"select = {pattern}", parameter="select",
            hint=f"the short name matches {len(candidates)} archives ({names}); give the full file name",
        )
    return candidates


def _is_file(path: str | os.PathLike[str]) -> bool:
    try:
        return os.path.isfile(path)
    except (OSError, ValueError):
        return False


def _glob_files(pattern: str) -> list[Path]:
    """The files (not folders) ``pattern`` matches, sorted; the folder part and the name are also
    tried in their other byte spellings (see :func:`on_disk`) when nothing matches as written."""
    try:
        hits = [p for p in glob.glob(pattern) if _is_file(p)]
    except (OSError, ValueError):
        hits = []
    if not hits and not pattern.isascii():
        folder, name = os.path.split(pattern)
        folders = [str(on_disk(folder))] if folder and not has_wildcard(folder) else [folder]
        for f in folders:
            for n in [name, *_byte_spellings(name)]:
                try:
                    hits += [p for p in glob.glob(os.path.join(f, n)) if _is_file(p)]
                except (OSError, ValueError):
                    continue
    return sorted({Path(p) for p in hits})
