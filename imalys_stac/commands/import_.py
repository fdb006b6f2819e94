"""`import`: STAC search → one masked, calibrated, cropped product per acquisition.

Translates the parameters into a search (`stac.search`), groups the hits into acquisitions
(same sensor, path and date: tiles merge into one seamless image), chooses each acquisition's
grid, measures its quality from the QA band inside the frame (one Dask pass over QA only) and
stores accepted acquisitions as lazy products (recipes over the archive members, see
`products.py`). No archive is extracted and no band pixel is read here.
"""
from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path

import dask
import numpy as np
import pystac
import xarray as xr

from ..chain import resolve_archive_pattern
from ..cube.bands import Calibration, image_assets, resolve_band
from ..cube.grid import Frame, Grid, asset_grid, transform_bounds
from ..cube.load import DEFAULT_CHUNK, SceneGroup, qa_cube, usable
from ..cube.quality import quality_band
from ..cube.vrt import recipe_vrt, vrt_possible
from ..products import import_item
from ..runtime.progress import dask_progress
from ..stac import Query, search
from .context import Context, command_record, log, read_frame

# Bands taken when `bands` is not given: every image asset but the QA/auxiliary ones.
_AUX_PREFIXES = ("qa", "atmos", "cloud_qa", "aerosol", "scl", "aot", "wvp")


def scene_key(item: pystac.Item) -> tuple[str, str, str]:
    p = item.properties
    if item.id[:2] in ("LC", "LE", "LT", "LO"):
        sensor = item.id[:4]  # LC08
    elif item.id.startswith("S2"):
        sensor = item.id[:3]  # S2A
    else:
        sensor = str(p.get("platform", "unknown"))
    orbit = str(p.get("landsat:wrs_path") or p.get("sat:relative_orbit") or "")
    return sensor, orbit, item.datetime.strftime("%Y%m%d")


def product_name(items: list[pystac.Item]) -> str:
    first = items[0]
    sensor, _, date = scene_key(first)
    p = first.properties
    if "landsat:wrs_path" in p:
        rows = sorted(str(it.properties.get("landsat:wrs_row", "")).zfill(3) for it in items)
        tile = f"{str(p['landsat:wrs_path']).zfill(3)}{rows[0]}"
    else:
        tile = str(p.get("s2:mgrs_tile") or str(p.get("grid:code", "")).replace("MGRS-", "") or first.id.split("_")[1])
    return f"{sensor}_{tile}_{date}"


def _default_bands(item: pystac.Item) -> list[str]:
    keys = []
    for key, asset in image_assets(item).items():
        if key.lower().startswith(_AUX_PREFIXES):
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
        paths: list[Path] = []
        for pattern in p.select:
            hits = resolve_archive_pattern(pattern)
            if not hits:
                raise cmd.error(f"no archive matches {pattern}", parameter="select")
            paths.extend(h for h in hits if h not in paths)
        source: object = paths
    elif p.database:
        source = p.database
    else:
        source = p.stac
    return search(source, query, log=log)


def group_items(items: list[pystac.Item]) -> list[list[pystac.Item]]:
    groups: dict[tuple, list[pystac.Item]] = defaultdict(list)
    for it in items:
        groups[scene_key(it)].append(it)
    return [sorted(g, key=lambda i: i.id) for _, g in sorted(groups.items(), key=lambda kv: (kv[0][2], kv[0]))]


def choose_grid(items: list[pystac.Item], key: str, frame: Frame | None, warp: int | None, pixel: float | None) -> Grid:
    """The archive's own grid by default; `warp`/`pixel` reproject; the frame's rectangle crops."""
    native = asset_grid(items[0], key)
    epsg, res, anchor = native.epsg, native.res_xy, native.anchor
    target_epsg = warp or epsg
    target_res = (pixel, pixel) if pixel else res
    if target_epsg != epsg or target_res != res:
        anchor = (0.0, 0.0)
    if frame is not None:
        bounds = frame.bounds_in(target_epsg)
    else:
        boxes = []
        for it in items:
            g = asset_grid(it, key)
            boxes.append(transform_bounds(g.bounds, g.epsg, target_epsg) if g.epsg != target_epsg else g.bounds)
        arr = np.array(boxes)
        bounds = (arr[:, 0].min(), arr[:, 1].min(), arr[:, 2].max(), arr[:, 3].max())
    return Grid.aligned(target_epsg, bounds, target_res[0], anchor, yres=target_res[1])


def run(ctx: Context, cmd) -> None:
    p = cmd.params
    frame = read_frame(cmd)
    items = select_items(cmd, frame)
    log.info("   %d archive item(s) selected", len(items))
    if not items:
        log.warning("import: no archive matches the selection (frame, period, distance); nothing imported")
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
        grids.append(choose_grid(tiles, keys[0], frame, p.warp, p.pixel))

    if p.target and len(groups) > 1:
        log.warning("import: target = %s names one image but %d acquisitions were selected; they keep "
                    "their sensor_tile_date names", p.target, len(groups))

    # Quality and cover: one lazy QA pass per acquisition, computed together.
    stats = []
    for g, grid in zip(groups, grids):
        qa = qa_cube([g], grid, chunksize=ctx.chunksize or DEFAULT_CHUNK)[0]
        region = None
        if frame is not None and p.polygon:
            g.region_wkt, g.region_epsg = frame.geometry_in(grid.epsg).wkt, grid.epsg
            region = xr.DataArray(g.region_mask(grid), dims=("y", "x"))
        present = qa.notnull()
        clear = usable(qa, quality_band(g.items[0]), p.rule) & present
        if region is not None:
            present = present & region.values
            clear = clear & region.values
            total = int(region.values.sum())
        else:
            total = int(np.prod(grid.shape))
        stats.append((present.sum(), clear.sum(), total))
    with dask_progress("quality"):
        counts = dask.compute(*[(s[0].data, s[1].data) for s in stats])
    written = 0
    for g, grid, (n_present, n_clear), (_, _, total) in zip(groups, grids, counts, stats):
        n_present, n_clear = int(n_present), int(n_clear)
        cover = n_present / total if total else 0.0
        g.quality = round(n_clear / n_present, 6) if n_present else 0.0
        if n_present == 0:
            log.info("   rejected %s: no image data inside the frame", g.name)
            continue
        if p.cover is not None and cover < p.cover:
            log.info("   rejected %s: covers %.1f %% of the frame, cover = %.2f asks for %.0f %%",
                     g.name, 100 * cover, p.cover, 100 * p.cover)
            continue
        if p.quality is not None and g.quality < p.quality:
            log.info("   rejected %s: quality %.3f < %.2f (%.1f %% of its pixels in the frame are cloud, shadow or cirrus under the %s rule)",
                     g.name, g.quality, p.quality, 100 * (1 - g.quality), p.rule)
            continue
        name = p.target if (p.target and len(groups) == 1) else g.name
        g.name = name
        with tempfile.TemporaryDirectory(dir=ctx.workdir.path, prefix=".import-") as tmp:
            sources = Path(tmp) / "sources.json"
            item = import_item(g, grid, cover=round(cover, 6), frame=str(p.frame) if p.frame else None, sources_file=sources)
            item.properties["imalys:command"] = command_record(ctx, cmd)
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
