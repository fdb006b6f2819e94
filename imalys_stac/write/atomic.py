"""Atomic outputs: write under a temporary name in the target's folder, rename on success."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


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


def moved_aside(target: Path) -> Path:
    """`.<name>.old-<pid>` beside `target`: where a folder waits while its replacement moves in."""
    return target.with_name(f".{target.name}.old-{os.getpid()}")


def replace(tmp: Path, target: Path) -> None:
    """Move `tmp` onto `target`. Files are replaced atomically; an existing directory (a product
    folder, a Zarr store) is moved aside first (`moved_aside`), because rename cannot replace a
    non-empty directory. A run killed between the two renames leaves the old folder aside:
    `recover_swaps` (called by every user of the folder before it writes) puts it back."""
    if tmp.is_dir() and target.exists():
        old = moved_aside(target)
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


# -- temporary files of dead runs ---------------------------------------------------------------
# Every temporary name imalys-stac makes carries the writing process id: `.<name>.tmp-<pid>…`
# (files from `temp_name`, folders from `scratch_dir`). A run that is killed (SIGKILL, OOM,
# power) cannot remove its temporaries; the next run recognises them by the pattern and the
# dead pid and removes them.
TEMP_PATTERN = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)(?:[-.].*)?$")
#: a folder moved aside by `replace` while its replacement moved in (see `moved_aside`)
ASIDE_PATTERN = re.compile(r"^\.(?P<name>.+)\.old-(?P<pid>\d+)$")


def pid_alive(pid: int) -> bool:
    """Whether a process of that id exists (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    except OSError:
        return False
    return True


def _left_by_dead_runs(folder: Path, pattern: re.Pattern[str], include_own: bool) -> list[re.Match[str]]:
    """Names in `folder` matching `pattern` (with a `pid` group) whose process is gone (or is this
    very process, when `include_own`: a run that has just started has made none yet)."""
    try:
        names = [entry.name for entry in os.scandir(folder)]
    except OSError:
        return []
    found = []
    for name in names:
        m = pattern.match(name)
        if m is None:
            continue
        pid = int(m.group("pid"))
        if (include_own and pid == os.getpid()) or (pid != os.getpid() and not pid_alive(pid)):
            found.append(m)
    return found


def stale_temporaries(folder: Path, *, include_own: bool = False) -> list[Path]:
    """Temporaries in `folder` whose writing process is gone (or this very process, when
    `include_own`: a run that has just started owns none yet)."""
    return [Path(folder) / m.string for m in _left_by_dead_runs(Path(folder), TEMP_PATTERN, include_own)]


def recover_swaps(folder: Path, *, include_own: bool = True) -> list[str]:
    """Finish the folder swaps of `replace` that a dead run (or, with `include_own`, this process
    before it swaps anything) left half done: a folder moved aside whose replacement never moved in
    is put back; one whose replacement is in place is removed. Returns the names put back."""
    folder = Path(folder)
    restored = []
    for m in _left_by_dead_runs(folder, ASIDE_PATTERN, include_own):
        aside, target = folder / m.string, folder / m.group("name")
        if target.exists() or target.is_symlink():
            remove(aside)
        else:
            os.replace(aside, target)
            restored.append(m.group("name"))
    return restored


def sweep_stale(folder: Path, *, include_own: bool = False) -> list[Path]:
    """Remove the stale temporaries of `folder` (see `stale_temporaries`); returns what it removed."""
    removed = stale_temporaries(folder, include_own=include_own)
    for path in removed:
        remove(path)
    return removed


@contextmanager
def scratch_dir(folder: Path, name: str) -> Iterator[Path]:
    """A temporary folder `.<name>.tmp-<pid>-XXXX` inside `folder` (same file system as the
    product, so the result can be renamed into place), removed on exit whatever happens."""
    folder = Path(folder)
    path = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-{os.getpid()}-", dir=folder))
    path.chmod(0o755)  # mkdtemp makes 0700; workers and browsers under other users must read it
    try:
        yield path
    finally:
        remove(path)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through `.<name>.tmp-<pid>-XXXX` in the same folder and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a catalog is meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
