"""`import`: STAC search → one masked, calibrated, cropped product per acquisition.

Translates the parameters into a search (`stac.search`), groups the hits into acquisitions
(same sensor, path and date: tiles merge into one seamless image), chooses each acquisition's
grid, measures its quality from the QA band inside the frame (one Dask pass over QA only) and
stores accepted acquisitions as lazy products (recipes over the archive members, see
`products.py`). No archive is extracted and no band pixel is read here.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import dask
import numpy as np
import pystac

from ..chain import as_measured, resolve_archive_pattern
from ..cube.bands import Calibration, image_assets, resolve_band
from ..cube.grid import Frame, Grid
from ..cube.plan import choose_grid, group_items, product_name
from ..cube.load import DEFAULT_CHUNK, SceneGroup, quality_counts
from ..cube.vrt import recipe_vrt, vrt_possible
from ..product_records import COMMAND, KIND, ImportRecord
from ..products import import_item
from ..runtime.progress import dask_progress
from ..stac import Query, search
from .context import FINGERPRINT, RunContext, checked_grid, command_record, fingerprint, log, read_frame


def _default_bands(item: pystac.Item) -> list[str]:
    """Bands taken when `bands` is not given: every data image asset but those the item's provider
    calls auxiliary (quality, atmosphere; any provider's for an item none owns)."""
    from ..registry import provider_for_item, providers

    provider = provider_for_item(item)
    judges = [provider] if provider is not None else providers()
    keys = []
    for key, asset in image_assets(item).items():
        if any(p.is_auxiliary(key) for p in judges):
            continue
        if "data" in (asset.roles or []) or "reflectance" in (asset.roles or []) or "temperature" in (asset.roles or []):
            keys.append(key)
    return keys


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
    rule = p.rule if p.mask else None
    groups: list[SceneGroup] = []
    grids: list[Grid] = []
    for tiles in group_items(items):
        try:
            labels = p.bands or _default_bands(tiles[0])
            keys = [resolve_band(tiles[0], b) for b in labels]
            for it in tiles[1:]:
                for b in labels:
                    resolve_band(it, b)
            calibration = Calibration.build(tiles[0], keys, p.factor, p.offset)
        except ValueError as exc:
            raise cmd.error(str(exc), parameter="bands" if "band" in str(exc) else "factor") from exc
        resampling = "bilinear" if (p.warp or p.pixel) else "nearest"
        groups.append(SceneGroup(product_name(tiles), tiles, keys, calibration, rule, resampling))
        grids.append(checked_grid(cmd, choose_grid(tiles, keys[0], frame, p.warp, p.pixel)))

    if p.target and len(groups) > 1:
        log.warning("import: target = %s names one image but %d acquisitions were selected; they keep "
                    "their sensor_tile_date names", p.target, len(groups))

    # Quality and cover: one lazy QA pass per acquisition, computed together.
    stats = []
    for g, grid in zip(groups, grids):
        region = None
        if frame is not None and p.polygon:
            g.region_wkt, g.region_epsg = frame.geometry_in(grid.epsg).wkt, grid.epsg
            region = g.region_mask(grid)
        total = int(region.sum()) if region is not None else int(np.prod(grid.shape))
        present, clear = quality_counts(g, grid, p.rule, chunksize=ctx.chunksize or DEFAULT_CHUNK, region=region)
        stats.append((present, clear, total))
    with dask_progress("quality"):
        counts = dask.compute(*[(s[0], s[1]) for s in stats])
    written = 0
    rejected: Counter[str] = Counter()
    q_text, c_text = cmd.written("quality"), cmd.written("cover")
    for g, grid, (n_present, n_clear), (_, _, total) in zip(groups, grids, counts, stats):
        n_present, n_clear = int(n_present), int(n_clear)
        cover = n_present / total if total else 0.0
        measured = n_clear / n_present if n_present else 0.0
        g.quality = round(measured, 6)
        reason = None
        if n_present == 0:
            reason, text = "no image data inside the frame", "no image data inside the frame"
        elif p.cover is not None and cover < p.cover:
            reason = f"below cover {c_text}"
            text = f"covers {as_measured(cover, p.cover)} of the frame, below cover = {c_text}"
        elif p.quality is not None and measured < p.quality:
            reason = f"below quality {q_text}"
            text = (f"quality {as_measured(measured, p.quality)} < {q_text} ({_share(1 - measured)} of its pixels in the "
                    f"frame are cloud, shadow or cirrus under the {p.rule} rule)")
        name = p.target if (p.target and len(groups) == 1) else g.name
        if reason is not None:
            rejected[reason] += 1
            log.info("   rejected %s: %s", g.name, text)
            if ctx.workdir.exists(name) and ctx.workdir.load(name).properties.get(KIND) == ImportRecord.KIND:
                # an earlier run accepted it; the current parameters do not: never use it silently
                ctx.workdir.remove(name)
                log.warning("import: removed %s imported by an earlier run: %s", name, text)
            continue
        g.name = name
        with ctx.workdir.scratch(name) as tmp:
            sources = Path(tmp) / "sources.json"
            item = import_item(g, grid, cover=round(cover, 6), frame=str(p.frame) if p.frame else None, sources_file=sources)
            item.properties[COMMAND] = command_record(ctx, cmd)
            item.properties[FINGERPRINT] = fingerprint(cmd, sorted(it.id for it in g.items), _frame_stamp(p.frame))
            files = {"sources": sources}
            if vrt_possible(g, grid):
                vrt = Path(tmp) / f"{name}.vrt"
                vrt.write_text(recipe_vrt(g, grid))
                item.add_asset("image", pystac.Asset(
                    href=str(vrt), media_type="application/xml", roles=["data"],
                    title="Calibrated, cropped bands as a GDAL VRT over the archive members (QA mask not applied)",
                    description="Bands: " + ", ".join(g.keys),
                ))
                files["image"] = vrt
            ctx.workdir.save(item, files=files)
        if frame is not None and cover < 0.99:
            log.warning("%s covers %.1f %% of the frame: the rest is nodata (another tile of the same "
                        "path and date, e.g. the neighbouring row, would fill it)", name, 100 * cover)
        written += 1
        log.info("   %s: quality %.3f, cover %.3f, %d tile(s) %s, grid EPSG:%d %dx%d at %g m",
                 name, g.quality, cover, len(g.items), ", ".join(it.id for it in g.items),
                 grid.epsg, grid.shape[1], grid.shape[0], grid.resolution)
    log.info("   imported %d of %d acquisition(s)", written, len(groups))
    summary = {"kept": written, "selected": len(groups), "rejected": dict(rejected), "line": cmd.line,
               "chain": str(getattr(ctx.chain, "path", ""))}
    ctx.workdir.note_import(summary)
    if written == 0:
        log.warning("import: nothing imported: %s", ctx.workdir.why_empty().replace("the last import ", "import ", 1))


def _share(value: float, fraction: bool = False) -> str:
    """A measured share without rounding it past the user's threshold (0.9989 never prints as 1.00)."""
    if fraction:
        return f"{value:.6g}"
    return f"{100 * value:.4g} %"


def _frame_stamp(frame: Path | None) -> list:
    """The frame file as it is now (path, size, time): a changed frame makes products new."""
    if not frame:
        return []
    try:
        st = Path(frame).stat()
        return [str(frame), st.st_size, st.st_mtime_ns]
    except OSError:
        return [str(frame)]
