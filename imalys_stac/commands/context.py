"""What every command adapter gets: the chain, the working directory and the run log."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..chain import Chain
from ..product_records import FINGERPRINT
from ..runtime.log import RunLog
from ..workdir import WorkDir

log = logging.getLogger("imalys_stac.commands")


@dataclass
class RunContext:
    chain: Chain
    workdir: WorkDir
    runlog: RunLog
    client: object | None = None
    chunksize: int | None = None  # None: sized per cube so a block's memory does not grow with the dates
    outputs: list[Path] = field(default_factory=list)
    #: starts the run's in-process Dask scheduler (its configuration) on first use; None once started
    dask_starter: Callable[[], object] | None = None

    def use_dask(self) -> None:
        """Make the run's Dask scheduler the one computations use (at most once per run)."""
        start, self.dask_starter = self.dask_starter, None
        if start is not None:
            start()

    @contextmanager
    def step(self, desc: str, *, dask: bool = True) -> Iterator[Any]:
        """A long step, its progress shown as `desc` (runtime.progress); `dask`: computed with
        Dask (the run's scheduler started, progress from its tasks), else the block reports it."""
        from ..runtime.progress import dask_progress, step_progress

        if dask:
            self.use_dask()
        with dask_progress(desc) if dask else step_progress(desc) as progress:
            yield progress


def command_record(ctx: RunContext, cmd) -> dict:
    """What made a product: chain file, line, command and its parameters as written (after
    variables) — stored in every product item so provenance survives across chains."""
    return {"chain": str(getattr(ctx.chain, "path", "")), "line": cmd.line, "command": cmd.name,
            "parameters": {k: (v if len(v) > 1 else v[0]) for k, v in cmd.raw.items()}}


def load_product(ctx: RunContext, cmd, name: str, hint: str):
    """A product of the working directory named in `select`, or an error that lists the products."""
    wd = ctx.workdir
    if not wd.exists(name):
        raise cmd.error(f"no product {name!r} in {wd.path} (products: {', '.join(wd.names()) or 'none'})",
                        parameter="select", hint=hint)
    return wd.load(name)


def read_frame(cmd):
    """The command's `frame` as a Frame (None without one); unreadable files name the line."""
    from ..cube.grid import Frame

    if not cmd.params.frame:
        return None
    try:
        frame = _read_frame_file(Frame, Path(cmd.params.frame))
    except ValueError as exc:
        raise cmd.error(str(exc.args[0]) if exc.args else str(exc), parameter="frame", hint=getattr(exc, "hint", None)) from exc
    left, bottom, right, top = frame.geometry.bounds
    if not right > left or not top > bottom:  # a point, or a line along an axis: its rectangle has no area
        shape = "a point" if right == left and top == bottom else "a line"
        raise cmd.error(f"the frame {cmd.params.frame} is {shape} ({frame.geometry.geom_type}): the rectangle "
                        "around it encloses no area", parameter="frame",
                        hint="give a polygon around the region (at least 2 pixels wide and high)")
    return frame


def _read_frame_file(frame_type, path: Path):
    """`Frame.read(path)`, also for a name that is not UTF-8 (a Latin-1 folder `caf\xe9`): GDAL
    takes names as UTF-8 text, so the file and its sidecars (a shapefile's .shx, .dbf, .prj …)
    are read through links with a plain name in a temporary folder."""
    import dataclasses
    import os
    import tempfile

    from ..errors import InputError

    try:
        os.fspath(path).encode("utf-8")
        return frame_type.read(path)
    except UnicodeEncodeError:
        pass
    stem = path.name.partition(".")[0]
    with tempfile.TemporaryDirectory(prefix="imalys-frame-") as tmp:
        try:
            sidecars = [p for p in path.parent.iterdir() if p.name.partition(".")[0] == stem]
        except OSError:
            sidecars = [path]
        for p in sidecars:
            ending = p.name[len(stem):].encode("utf-8", "surrogateescape").decode("ascii", "replace")
            os.symlink(os.fsencode(p.absolute()), os.path.join(tmp, "frame" + ending))
        link = Path(tmp) / ("frame" + path.name[len(stem):].encode("utf-8", "surrogateescape").decode("ascii", "replace"))
        try:
            frame = frame_type.read(link)
        except InputError as exc:  # the message names the user's file, not the link
            text = str(exc.args[0]) if exc.args else str(exc)
            raise InputError(text.replace(str(link), str(path)), exc.hint) from exc
    return dataclasses.replace(frame, path=path)


#: the fewest pixels a result has in each direction: a file 1 pixel wide or high cannot state its
#: pixel size along that side, and readers then place it at (0, 0) with 1-unit pixels
MIN_GRID_SIDE = 2


def checked_grid(cmd, grid, parameter: str = "pixel"):
    """`grid`, after making sure it can be computed at all (size bounded before any work)."""
    from ..cube.grid import check_grid_size
    from ..errors import ResourceError

    try:
        check_grid_size(grid)
    except ResourceError as exc:
        given = parameter if parameter in cmd.raw else ("frame" if "frame" in cmd.raw else None)
        raise cmd.error(str(exc), parameter=given, hint=exc.hint) from exc
    rows, cols = grid.shape
    if rows < MIN_GRID_SIDE or cols < MIN_GRID_SIDE:
        rx, ry = grid.res_xy
        unit = grid.crs.axis_info[0].unit_name if grid.crs.axis_info else "units"
        where = "frame" if "frame" in cmd.raw else (parameter if parameter in cmd.raw else None)
        raise cmd.error(
            f"the result would be {cols} × {rows} pixel(s) of {rx:g} × {ry:g} {unit} (EPSG:{grid.epsg}); "
            f"at least {MIN_GRID_SIDE} × {MIN_GRID_SIDE} are needed to place it on the map",
            parameter=where,
            hint=f"give a frame at least {MIN_GRID_SIDE * rx:g} × {MIN_GRID_SIDE * ry:g} {unit} large"
                 + (", or a smaller pixel" if "pixel" in cmd.raw else ""))
    return grid


def fingerprint(cmd, *parts) -> str:
    """What a product was made from: the command's parameters as written and the fingerprints
    (or ids) of its inputs. A re-run whose product carries the same fingerprint keeps it instead
    of computing it again (after a stopped run, only the unfinished products are redone)."""
    import hashlib
    import json

    from .. import __version__

    doc = {"command": cmd.name, "parameters": {k: list(v) for k, v in sorted(cmd.raw.items())},
           "inputs": parts, "version": __version__}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:32]


def up_to_date(wd, name: str, stamp: str) -> bool:
    """Whether product `name` exists with fingerprint `stamp` and all its files."""
    if not wd.exists(name):
        return False
    try:
        item = wd.load(name)
    except Exception:  # an unreadable item is simply not up to date
        return False
    if item.properties.get(FINGERPRINT) != stamp:
        return False
    return all(Path(a.get_absolute_href()).exists() for a in item.assets.values())


_DISK_HINTS = {28: "free some space or choose another folder",  # ENOSPC
               122: "free some space or choose another folder",  # EDQUOT
               30: "choose a folder you can write to",  # EROFS
               13: "choose a folder you can write to"}  # EACCES


def os_reason(exc: BaseException, folder: Path | None = None) -> tuple[str, str | None]:
    """The cause of a failed write in words, with a hint. The operating system's reason is
    looked for in the chained errors; GDAL often reports only 'Write failed', so then the
    folder written to is asked whether it is full or read-only."""
    texts = {28: "No space left on device", 30: "Read-only file system", 13: "Permission denied", 122: "Disk quota exceeded"}
    seen: BaseException | None = exc
    first = None
    while seen is not None:
        err = getattr(seen, "errno", None)
        if err in _DISK_HINTS:
            return getattr(seen, "strerror", None) or texts[err], _DISK_HINTS[err]
        text = str(seen)
        for code, words in texts.items():
            if words.lower() in text.lower():
                return words, _DISK_HINTS[code]
        first = first or (getattr(seen, "strerror", None) or text)
        seen = seen.__cause__ or seen.__context__
    if folder is not None:
        import os

        try:
            st = os.statvfs(folder)
        except OSError:
            st = None
        if st is not None and st.f_flag & os.ST_RDONLY:
            return texts[30], _DISK_HINTS[30]
        if st is not None and st.f_bavail * st.f_frsize < (1 << 20):
            return texts[28], _DISK_HINTS[28]
    return first or str(exc), None
