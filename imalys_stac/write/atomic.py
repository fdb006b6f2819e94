"""Atomic outputs: write under a temporary name in the target's folder, rename on success."""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def temp_name(target: Path, extra: str = "") -> Path:
    """`.<name>.tmp-<pid><extra>` beside `target`: same file system, so the final rename is atomic."""
    return target.with_name(f".{target.name}.tmp-{os.getpid()}{extra}")


def remove(path: Path) -> None:
    """Remove a file or a directory tree if it exists (temporary leftovers)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def replace(tmp: Path, target: Path) -> None:
    """Move `tmp` onto `target`. Files are replaced atomically; an existing directory (a Zarr
    store) is moved aside first, because rename cannot replace a non-empty directory."""
    if tmp.is_dir() and target.exists():
        old = temp_name(target, ".old")
        remove(old)
        os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            os.replace(old, target)  # put the old product back
            raise
        remove(old)
    else:
        if target.is_dir() and not target.is_symlink():
            raise IsADirectoryError(f"cannot write the file {target}: a directory of that name exists")
        os.replace(tmp, target)


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it to `target` when the block succeeds,
    remove it (file or directory) when the block raises. An existing target stays untouched
    until the rename.

    >>> with atomic_path("out.tif") as tmp:      # doctest: +SKIP
    ...     write_something(tmp)
    """
    target = Path(target).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(target)
    remove(tmp)  # a leftover of this very process id can only be stale
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary file {tmp} for {target}")
        replace(tmp, target)
    except BaseException:
        remove(tmp)
        raise
