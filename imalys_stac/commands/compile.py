"""`compile`: imported images on one grid, as a lazy stack product.

Chooses the inputs (select/search/period), then one common grid: the `crsystem` (or the most
common CRS of the inputs), the `pixel` size (or the finest input's), the frame's rectangle (or
the union of the inputs' extents), aligned to whole pixels — on the inputs' own pixel grid when
no reprojection is needed, so no resampling happens then.
"""
from __future__ import annotations

from pathlib import Path

import pystac
import rasterio
from shapely import wkt as shapely_wkt

from ..cube.grid import Frame, Grid
from ..cube.plan import common_grid
from ..cube.vrt import on_grid, stack_vrt, write_warped_vrt
from ..gdalnames import gdal_name, vrt_bytes
from ..product_records import COMMAND, ImportRecord
from ..products import KIND, VRT_MEDIA_TYPE, compile_item, store
from .compile_format import stack_scaling, write_scaled_stack
from .context import FINGERPRINT, RunContext, checked_grid, command_record, fingerprint, load_product, log, read_frame


def pick_inputs(ctx: RunContext, cmd) -> list[pystac.Item]:
    """The imported images the compile stacks, by date (then name), each item read once."""
    p = cmd.params
    wd = ctx.workdir
    names: list[str] = []
    for s in p.select:
        names.append(load_product(ctx, cmd, s, hint="run import first").id)
    if p.search:
        hits = wd.search(p.search)
        if not hits:
            why = wd.why_empty()
            raise cmd.error(
                f"no product matches {cmd.written('search')}"
                + (f": {why}" if why else f" in {wd.path} (products: {', '.join(wd.names()) or 'none'})"),
                parameter="search", hint="lower quality or cover in import, or check the pattern" if why else "run import first, or check the pattern",
            )
        names += [h for h in hits if h not in names]
    if not p.select and not p.search:
        names = wd.names()
    items = {}
    for n in names:
        it = wd.load(n)
        if it.properties.get(KIND) == "import":
            items[it.id] = it
    if p.period:
        items = {k: it for k, it in items.items() if it.datetime is not None and any(per.contains(it.datetime.date()) for per in p.period)}
    if not items:
        why = wd.why_empty()
        raise cmd.error(
            "no imported image is left after the selection" + (" and period filter" if p.period else "")
            + (f" ({why})" if why else ""),
            parameter="period" if p.period else ("search" if p.search else "select"),
        )
    return [items[n] for n in sorted(items, key=lambda n: (items[n].datetime, n))]


def inputs_frame(recipes: list[ImportRecord]) -> Frame | None:
    """The frame the inputs were imported with, when they share one: a compile without a frame
    of its own then covers that frame's rectangle in its grid, as the seed defines the region ("a
    rectangle including all points of the given geometry"), whatever UTM zone each image was
    imported in. (The union of the images' own grids is larger: an image of the neighbouring
    zone covers the frame's rectangle in *its* zone, which is rotated against this one.)"""
    frames = {(r.frame_geometry, r.frame_crs) for r in recipes}
    if len(frames) != 1:
        return None
    geometry, crs = frames.pop()
    if not geometry or not crs:
        return None
    return Frame(Path(recipes[0].frame or "frame"), shapely_wkt.loads(geometry), crs)


def stack_view(ctx: RunContext, items, grid: Grid, path: Path, folder: Path) -> dict[str, Path]:
    """Write the compile's VRT (one band per date and band, `<yyyymmdd>_<band>` as the export of
    a stack names them) to `path`, naming the imports' VRTs relative to the compile's `folder`
    (where `path` goes); an image not on the stack's pixels is seen through a warped VRT beside
    it (bilinear, as compile resamples). Returns the files written (asset key → path), none when
    an image has no VRT."""
    layers, names = [], set()
    files: dict[str, Path] = {}
    for it in items:
        image = it.assets.get("image")
        if image is None:
            return {}
        source = image.get_absolute_href() or image.href
        own = Grid.from_stac(it.properties)
        if not on_grid(own, grid):
            warped = path.with_name(f"{path.stem}.{it.id}.warped.vrt")
            write_warped_vrt(source, grid, warped)
            files[f"warped_{it.id}"] = warped
            source, own = str(folder / warped.name), grid
        for band, key in enumerate(ImportRecord.from_item(it).bands, start=1):
            name = f"{it.datetime:%Y%m%d}_{key}"
            if name in names:  # two images of one day (different paths): the product names them
                name = f"{it.id}_{key}"
            names.add(name)
            layers.append((source, band, own, name))
    text = stack_vrt(layers, grid, folder)
    if text is None:  # not reached: every layer is on the grid now
        return {}
    path.write_bytes(vrt_bytes(text))
    return {"stack": path, **files}


def template_grid(ctx: RunContext, cmd, template: str) -> Grid:
    wd = ctx.workdir
    if wd.exists(template):
        return Grid.from_stac(wd.load(template).properties)
    path = Path(template).expanduser()
    if not path.exists():
        raise cmd.error(f"template {template!r} is neither a product nor a file", parameter="projection")
    with rasterio.open(gdal_name(path)) as ds:
        b = ds.bounds
        rx, ry = abs(ds.transform.a), abs(ds.transform.e)
        return Grid(ds.crs.to_epsg(), (b.left, b.bottom, b.right, b.top), rx, None if rx == ry else ry)


def run(ctx: RunContext, cmd) -> None:
    p = cmd.params
    scaling = stack_scaling(cmd)  # format = int16: the stack is computed and stored (compile_format)
    items = pick_inputs(ctx, cmd)
    names = [it.id for it in items]
    recipes = [ImportRecord.from_item(it) for it in items]
    grids = [Grid.from_stac(it.properties) for it in items]
    frame = read_frame(cmd) or inputs_frame(recipes)
    if p.projection:
        grid = template_grid(ctx, cmd, p.projection)
    else:
        native = [r.resampling == "nearest" for r in recipes]
        grid = common_grid(grids, native, epsg=p.crsystem, pixel=p.pixel, frame=frame)
    checked_grid(cmd, grid, "pixel")
    bands = {r.bands for r in recipes}
    if len(bands) > 1:
        raise cmd.error(f"the selected images have different bands {sorted(bands)}; import them with the same `bands`",
                        parameter="search" if p.search else "select")
    # the compile's own frame cuts its polygon; the imports' frame only sets the rectangle
    frame_wkt = frame.geometry_in(grid.epsg).wkt if (frame is not None and p.frame) else None
    item = compile_item(p.target, items, grid, frame_wkt, str(p.frame) if p.frame else None)
    item.properties[COMMAND] = command_record(ctx, cmd)
    item.properties[FINGERPRINT] = fingerprint(cmd, [(it.id, it.properties.get(FINGERPRINT)) for it in items], grid.to_stac())
    with ctx.workdir.scratch(p.target) as tmp:
        if scaling is not None:  # the stored stack (its asset added there) instead of the VRTs
            files = write_scaled_stack(ctx, item, scaling, Path(tmp) / f"{p.target}.tif")
        else:
            files = stack_view(ctx, items, grid, Path(tmp) / f"{p.target}.vrt", ctx.workdir.product_folder(p.target))
        for key, path in files.items() if scaling is None else ():
            if key == "stack":
                # untyped, as the import's VRT: odc-stac reads an untyped data asset as a raster
                item.add_asset(key, pystac.Asset(
                    href=str(path), roles=["data"],
                    title="The stack as a GDAL VRT over the imported images, one band per date and band "
                          "(QA mask and frame polygon not applied)"))
            else:  # read through the stack VRT, not a product of its own
                item.add_asset(key, pystac.Asset(
                    href=str(path), media_type=VRT_MEDIA_TYPE, roles=["virtual"],
                    title=f"{key.removeprefix('warped_')} warped onto the stack's grid (bilinear), a GDAL VRT"))
        store(ctx.workdir, item, files=files)
    log.info("   %s: %d image(s) %s on EPSG:%d, %d x %d pixels of %g m", p.target, len(items), ", ".join(names),
             grid.epsg, grid.shape[1], grid.shape[0], grid.resolution)
