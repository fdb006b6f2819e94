"""`import`: STAC search → one masked, calibrated, cropped product per acquisition.

Translates the parameters into a search (`stac.search`) and a `cube.plan.Recipe`; planning
(`cube.plan`: acquisitions, names, grids, coverage and quality from one pass over the quality
band) happens there, on frozen values. This module decides what to say about each
acquisition and stores the accepted ones as lazy products (recipes over the archive members, see
`products.py`). No archive is extracted and no band pixel is read here.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pystac

from ..chain import as_measured, resolve_archive_pattern
from ..cube.grid import Frame
from ..cube.plan import Acquisition, PlanError, Recipe, measure_coverages, plan_acquisitions
from ..cube.vrt import recipe_vrt, vrt_possible
from ..gdalnames import vrt_bytes
from ..product_records import COMMAND, KIND, ImportRecord
from ..products import import_item, store
from ..stac import Query, search
from .context import FINGERPRINT, RunContext, checked_grid, command_record, fingerprint, log, read_frame


def select_items(cmd, frame: Frame | None) -> list[pystac.Item]:
    p = cmd.params
    query = Query(
        bbox=frame.bounds_in(4326) if frame else None,
        periods=tuple((per.start, per.end) for per in p.period),
        distance=p.distance,
        collections=p.collections or None,
    )
    if p.select:
        return _selected_items(cmd, query)
    if p.database:
        return search(p.database, query, log=log)
    return search(p.stac, query, log=log)


def _selected_items(cmd, query: Query) -> list[pystac.Item]:
    """Items of the archives `select` names. An archive named exactly that cannot be read is an
    error naming the file and why; broken matches of a wildcard are skipped with a warning each."""
    from ..stac.search import filter_items, read_archives

    named: dict[Path, str] = {}
    for pattern in cmd.params.select:
        hits = resolve_archive_pattern(pattern)
        if not hits:
            raise cmd.error(f"no archive matches {pattern}", parameter="select",
                            hint="check the path; a short tutorial name needs exactly one archive with that beginning")
        wildcard = any(ch in Path(pattern).name for ch in "*?[")
        for h in hits:
            named.setdefault(h, pattern if not wildcard else "")

    items = []
    for path, result in zip(named, read_archives(list(named))):
        if isinstance(result, Exception):
            reason = str(result).removeprefix(f"{path}: ")
            if named[path]:
                raise cmd.error(f"cannot read the archive {path}: {reason}", parameter="select",
                                hint="replace the file by a complete download, or remove it from select")
            log.warning("import: skipped %s (matched by a wildcard of select): %s", path, reason)
            continue
        items.append(result)
    return filter_items(items, query)


def planned(cmd, items: list[pystac.Item], frame: Frame | None) -> list[Acquisition]:
    """The acquisitions an import of `items` makes (the recipe from the command's parameters),
    each grid checked against the size limits; a PlanError becomes an error at its parameter.
    The import itself and `imalys-stac plan` (api/dryrun.py) both plan through this."""
    p = cmd.params
    recipe = Recipe(bands=tuple(p.bands or ()), factor=p.factor, offset=p.offset, rule=p.rule, mask=p.mask,
                    warp=p.warp, pixel=p.pixel, polygon=bool(frame is not None and p.polygon))
    try:
        acquisitions = plan_acquisitions(items, recipe, frame)
    except PlanError as exc:
        raise cmd.error(str(exc), parameter=exc.parameter) from exc
    for a in acquisitions:
        checked_grid(cmd, a.grid)
    return acquisitions


def run(ctx: RunContext, cmd) -> None:
    p = cmd.params
    frame = read_frame(cmd)
    items = select_items(cmd, frame)
    log.info("   %d archive item(s) selected", len(items))
    if not items:
        log.warning("import: no archive matches the selection (%s); nothing imported",
                    ", ".join(k for k in ("frame", "period", "distance", "collections") if cmd.raw.get(k)) or "none given")
        ctx.workdir.note_import({"kept": 0, "selected": 0, "rejected": {}, "line": cmd.line,
                                 "chain": str(getattr(ctx.chain, "path", ""))})
        return
    plan = planned(cmd, items, frame)

    if p.target and len(plan) > 1:
        log.warning("import: target = %s names one image but %d acquisitions were selected; they keep "
                    "their sensor_tile_date names", p.target, len(plan))

    # Quality and cover: one pass over the quality band per acquisition (in this process for a
    # small frame, else one Dask pass over all of them on the run's scheduler). A reduce later in
    # the chain reads the same QA tiles again: the decoded tiles are kept for it.
    from ..cube.tiles import keep_decoded_tiles

    later = list(getattr(ctx.chain, "commands", []))
    later = later[later.index(cmd) + 1:] if cmd in later else []
    with keep_decoded_tiles(any(c.name == "reduce" for c in later)):
        measured_all = measure_coverages(plan, p.rule, ctx.chunksize, in_process=ctx.client is None,
                                         progress=lambda dask: ctx.step("quality", dask=dask))
    written = 0
    rejected: Counter[str] = Counter()
    q_text, c_text = cmd.written("quality"), cmd.written("cover")
    for acq, cov in zip(plan, measured_all):
        grid, cover, measured = acq.grid, cov.cover, cov.quality
        g = replace(acq.group, quality=round(measured, 6))
        reason = text = None
        why = cov.rejection(cover=p.cover, quality=p.quality)
        if why == "no data":
            reason, text = "no image data inside the frame", "no image data inside the frame"
        elif why == "cover":
            reason = f"below cover {c_text}"
            text = f"covers {as_measured(cover, p.cover)} of the frame, below cover = {c_text}"
        elif why == "quality":
            reason = f"below quality {q_text}"
            text = (f"quality {as_measured(measured, p.quality)} < {q_text} ({_share(1 - measured)} of its pixels in the "
                    f"frame are cloud, shadow or cirrus under the {p.rule} rule)")
        name = p.target if (p.target and len(plan) == 1) else g.name
        if reason is not None:
            rejected[reason] += 1
            log.info("   rejected %s: %s", g.name, text)
            if ctx.workdir.exists(name) and ctx.workdir.load(name).properties.get(KIND) == ImportRecord.KIND:
                # an earlier run accepted it; the current parameters do not: never use it silently
                ctx.workdir.remove(name)
                log.warning("import: removed %s imported by an earlier run: %s", name, text)
            continue
        g = replace(g, name=name)
        with ctx.workdir.scratch(name) as tmp:
            sources = Path(tmp) / "sources.json"
            item = import_item(g, grid, cover=round(cover, 6), frame=str(p.frame) if p.frame else None, sources_file=sources,
                               folder=ctx.workdir.product_folder(name), **_frame_fields(frame))
            item.properties[COMMAND] = command_record(ctx, cmd)
            item.properties[FINGERPRINT] = fingerprint(cmd, sorted(it.id for it in g.items), _frame_stamp(p.frame))
            files = {"sources": sources}
            if vrt_possible(g, grid):
                vrt = Path(tmp) / f"{name}.vrt"
                vrt.write_bytes(vrt_bytes(recipe_vrt(g, grid)))
                # no media type: GDAL's VRT has no registered one, and odc-stac reads an untyped
                # data asset as a raster (it skips "application/xml", the type this had before)
                item.add_asset("image", pystac.Asset(
                    href=str(vrt), roles=["data"],
                    title="Calibrated, cropped bands as a GDAL VRT over the archive members (QA mask not applied)",
                    description="Bands: " + ", ".join(g.keys),
                ))
                files["image"] = vrt
            store(ctx.workdir, item, files=files)
        if frame is not None and cover < 0.99:
            log.warning("%s covers %.1f %% of the frame: the rest is nodata (another tile of the same "
                        "path and date, e.g. the neighbouring row, would fill it)", name, 100 * cover)
        written += 1
        log.info("   %s: quality %.3f, cover %.3f, %d tile(s) %s, grid EPSG:%d %dx%d at %g m",
                 name, g.quality, cover, len(g.items), ", ".join(it.id for it in g.items),
                 grid.epsg, grid.shape[1], grid.shape[0], grid.resolution)
    log.info("   imported %d of %d acquisition(s)", written, len(plan))
    summary = {"kept": written, "selected": len(plan), "rejected": dict(rejected), "line": cmd.line,
               "chain": str(getattr(ctx.chain, "path", ""))}
    ctx.workdir.note_import(summary)
    if written == 0:
        log.warning("import: nothing imported: %s", ctx.workdir.why_empty().replace("the last import ", "import ", 1))


def _share(value: float, fraction: bool = False) -> str:
    """A measured share without rounding it past the user's threshold (0.9989 never prints as 1.00)."""
    if fraction:
        return f"{value:.6g}"
    return f"{100 * value:.4g} %"


def _frame_fields(frame: Frame | None) -> dict:
    """The frame's geometry as the product keeps it (its own CRS), so that a compile without a
    frame covers the same rectangle whichever zone each image is in."""
    if frame is None:
        return {}
    crs = frame.crs
    epsg = crs.to_epsg()
    geometry = frame.geometry
    if len(geometry.wkt) > FRAME_WKT_LIMIT:
        # a detailed outline (a district's border) would swell every item; its convex hull has the
        # same corner points, so the same rectangle (up to the bend of its straight edges)
        geometry = geometry.convex_hull
    return {"frame_geometry": geometry.wkt, "frame_crs": f"EPSG:{epsg}" if epsg else crs.to_wkt()}


#: the longest frame outline (WKT characters) an import item keeps as it is
FRAME_WKT_LIMIT = 20_000


def _frame_stamp(frame: Path | None) -> list:
    """The frame file as it is now (path, size, time): a changed frame makes products new."""
    if not frame:
        return []
    try:
        st = Path(frame).stat()
        return [str(frame), st.st_size, st.st_mtime_ns]
    except OSError:
        return [str(frame)]
