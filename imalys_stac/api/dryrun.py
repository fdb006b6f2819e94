"""`imalys-stac plan CHAIN`: what a run would do, without writing anything.

Walks the chain's commands over a model of the working directory (the products already there,
unless `home clear` empties it, plus those the earlier commands would make). Import searches the
archives and measures every acquisition's quality and cover exactly as a run does (one pass over
the quality bands: the only pixels read); compile, reduce and export report their grids, sizes
and files. The same functions as the run decide (`commands.import_.select_items`,
`cube.plan`), so a plan and a run agree.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..chain import Chain, as_measured


@dataclass
class _Product:
    """A product as far as a plan needs it."""

    kind: str
    grid: Any  # cube.grid.Grid
    date: datetime | None = None
    bands: tuple[str, ...] = ()
    native: bool = True  # read on its archive's own pixel grid (votes for the compile grid's anchor)
    planned: bool = True  # False: already in the working directory


@dataclass
class _State:
    workdir: Path
    products: dict[str, _Product] = field(default_factory=dict)
    #: catalog folder a `catalog` command of this chain would write → its archives pattern
    catalogs: dict[Path, str] = field(default_factory=dict)


def _catalog_folder(path: Any) -> Path:
    """The folder of a catalog named as `catalog target` or `import database` names it."""
    p = Path(path).expanduser().absolute()
    if p.suffix.lower() == ".csv":
        return p.with_suffix("")
    if p.name == "catalog.json" or p.suffix.lower() == ".parquet":
        return p.parent
    return p


def grid_dict(grid: Any, bands: int | None = None) -> dict:
    """A grid as plan reports it: EPSG, size, pixel, bounds, pixels and float32 bytes per band."""
    rows, cols = grid.shape
    out = {"epsg": grid.epsg, "width": cols, "height": rows, "resolution": list(grid.res_xy),
           "bounds": [round(float(v), 6) for v in grid.bounds], "pixels": rows * cols,
           "megabytes_per_band": round(rows * cols * 4 / 1e6, 3)}
    if bands is not None:
        out["bands"] = bands
    return out


def plan_chain(chain: Chain) -> dict:
    """The plan of a parsed chain as a JSON-ready dict (see the module doc)."""
    from ..workdir import WorkDir

    home: Any = next(c for c in chain.commands if c.name == "home").params
    wd = WorkDir(home.directory)
    state = _State(wd.path)
    if not home.clear:
        _existing(wd, state)
    steps: list[dict] = []
    out = {"chain": str(chain.path), "working_directory": str(wd.path), "clear": bool(home.clear),
           "existing_products": sorted(n for n, p in state.products.items() if not p.planned), "commands": steps}
    for cmd in chain.commands:
        if cmd.name in ("home", "replace"):
            continue
        step = {"command": cmd.name, "line": cmd.line}
        step.update(_PLANNERS[cmd.name](cmd, state))
        steps.append(step)
    return out


def _existing(wd: Any, state: _State) -> None:
    from ..cube.grid import Grid
    from ..product_records import KIND, CompositeRecord, ImportRecord, RecordError

    for name in wd.names():
        try:
            item = wd.load(name)
            kind = str(item.properties.get(KIND))
            bands: tuple[str, ...] = ()
            native = True
            if kind == "import":
                rec = ImportRecord.from_item(item)
                bands, native = tuple(rec.bands), rec.resampling == "nearest"
            elif kind == "reduce":
                bands = tuple(CompositeRecord.from_item(item).bands)
            state.products[name] = _Product(kind, Grid.from_stac(item.properties), item.datetime, bands, native,
                                            planned=False)
        except (RecordError, KeyError, ValueError, OSError):  # not a product a later command could use
            continue


def _catalog(cmd, state: _State) -> dict:
    from ..stac.catalog import expand_archives

    found = expand_archives(cmd.params.archives)
    state.catalogs[_catalog_folder(cmd.params.target)] = cmd.params.archives
    return {"archives": len(found), "target": str(cmd.params.target)}


def _import(cmd, state: _State) -> dict:

    from ..commands.context import read_frame
    from ..commands.import_ import planned as plan_import
    from ..commands.import_ import select_items
    from ..cube.plan import measure_coverages
    from ..runtime.client import active_client

    p = cmd.params
    frame = read_frame(cmd)
    planned = state.catalogs.get(_catalog_folder(p.database)) if p.database else None
    if planned is not None and not (_catalog_folder(p.database) / "catalog.json").exists():
        # the catalog an earlier command of this chain would write: its archives, read as it reads them
        from ..stac import Query, search

        items = search(planned, Query(bbox=frame.bounds_in(4326) if frame else None,
                                      periods=tuple((per.start, per.end) for per in p.period),
                                      distance=p.distance, collections=p.collections or None))
    else:
        items = select_items(cmd, frame)
    if not items:
        return {"archives": 0, "acquisitions": [], "kept": 0}
    acquisitions = plan_import(cmd, items, frame)
    measured = measure_coverages(acquisitions, p.rule, in_process=active_client() is None)
    rows = []
    kept = 0
    for acq, cov in zip(acquisitions, measured):
        g = acq.group
        why = cov.rejection(cover=p.cover, quality=p.quality)
        reason = None
        if why == "no data":
            reason = "no image data inside the frame"
        elif why == "cover":
            reason = f"covers {as_measured(cov.cover, p.cover)} of the frame, below cover = {cmd.written('cover')}"
        elif why == "quality":
            reason = f"quality {as_measured(cov.quality, p.quality)} < {cmd.written('quality')}"
        name = p.target if (p.target and len(acquisitions) == 1) else g.name
        rows.append({"name": name, "date": g.datetime.isoformat(), "tiles": [it.id for it in g.items],
                     "quality": round(cov.quality, 6), "cover": round(cov.cover, 6), "kept": why is None,
                     "reason": reason, "grid": grid_dict(acq.grid, len(g.keys))})
        if why is None:
            kept += 1
            state.products[name] = _Product("import", acq.grid, g.datetime, tuple(g.keys), g.resampling == "nearest")
        elif name in state.products and state.products[name].kind == "import":
            del state.products[name]  # a run removes what the current parameters reject
    return {"archives": len(items), "acquisitions": rows, "kept": kept}


def _matches(name: str, pattern: str) -> bool:
    from ..workdir import strip_ending

    return fnmatch.fnmatchcase(name, strip_ending(pattern))


def _compile(cmd, state: _State) -> dict:
    from ..commands.context import checked_grid, read_frame
    from ..cube.plan import common_grid

    p = cmd.params
    names: list[str] = []
    for s in p.select:
        if s not in state.products:
            raise cmd.error(f"no product {s!r} would be in the working directory "
                            f"(products: {', '.join(sorted(state.products)) or 'none'})", parameter="select",
                            hint="run import first")
        names.append(s)
    for pattern in p.search:
        names += [n for n in sorted(state.products) if _matches(n, pattern) and n not in names]
    if not p.select and not p.search:
        names = sorted(state.products)
    inputs = {n: state.products[n] for n in names if state.products[n].kind == "import"}
    if p.period:
        inputs = {n: v for n, v in inputs.items() if v.date is not None and any(per.contains(v.date.date()) for per in p.period)}
    if not inputs:
        raise cmd.error("no imported image would be left after the selection" + (" and period filter" if p.period else ""),
                        parameter="period" if p.period else ("search" if p.search else "select"))
    order = sorted(inputs, key=lambda n: (inputs[n].date or datetime.min, n))
    if p.projection and p.projection in state.products:  # a product an earlier command makes
        grid = state.products[p.projection].grid
    elif p.projection:  # an image file, or a product already in the working directory
        from types import SimpleNamespace

        from ..commands.compile import template_grid
        from ..workdir import WorkDir

        context: Any = SimpleNamespace(workdir=WorkDir(state.workdir))  # all template_grid reads of a run
        grid = template_grid(context, cmd, p.projection)
    else:
        grid = common_grid([inputs[n].grid for n in order], [inputs[n].native for n in order], epsg=p.crsystem,
                           pixel=p.pixel, frame=read_frame(cmd))
    checked_grid(cmd, grid, "pixel")
    bands = inputs[order[0]].bands
    state.products[p.target] = _Product("compile", grid, None, bands)
    return {"inputs": order, "target": p.target, "grid": grid_dict(grid, len(bands)),
            "megabytes": round(grid.shape[0] * grid.shape[1] * 4 * max(1, len(bands)) * len(order) / 1e6, 3)}


def _reduce(cmd, state: _State) -> dict:
    from ..registry import REDUCERS

    p = cmd.params
    source = state.products.get(p.select)
    if source is None:
        raise cmd.error(f"no product {p.select!r} would be in the working directory "
                        f"(products: {', '.join(sorted(state.products)) or 'none'})", parameter="select",
                        hint="run compile (or import) first")
    outputs = []
    for method in p.execute:
        name = p.target or method
        per_band = REDUCERS[method].per_band and not p.flat
        if per_band and p.preserve == "bands":
            bands = list(source.bands)
        elif per_band:
            bands = ["all"]
        else:
            bands = [method]
        bands += (["count"] if p.count else []) + (["source"] if p.source else [])
        state.products[name] = _Product("reduce", source.grid, None, tuple(bands))
        outputs.append({"name": name, "process": method, "bands": bands, "grid": grid_dict(source.grid, len(bands)),
                        "megabytes": round(source.grid.shape[0] * source.grid.shape[1] * 4 * len(bands) / 1e6, 3)})
    return {"select": p.select, "outputs": outputs}


def _export(cmd, state: _State) -> dict:
    from ..registry import FORMATS

    p = cmd.params
    if p.select not in state.products:
        raise cmd.error(f"no product {p.select!r} would be in the working directory "
                        f"(products: {', '.join(sorted(state.products)) or 'none'})", parameter="select",
                        hint="run reduce (or compile/import) first")
    target = Path(p.target).expanduser().absolute()
    fmt = FORMATS.get(target.suffix.lower())
    return {"select": p.select, "target": str(target), "format": fmt.description if fmt else None,
            "exists": target.exists()}


_PLANNERS = {"catalog": _catalog, "import": _import, "compile": _compile, "reduce": _reduce, "export": _export}
