"""`reduce`: a compiled stack (or one image) → one image per process, computed on Dask and
stored as a COG product in the working directory."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pystac

from ..chain import ChainError
from ..cube.grid import Grid
from ..errors import ImalysError
from ..product_records import COG_CHECKED, COMMAND, CompositeRecord, file_stamp
from ..products import KIND, collapse_warning, cube_of, derived_item, store
from ..registry import REDUCERS
from ..runtime.progress import dask_progress
from ..write.raster import as_disk_error, check_room_for, gdal_errors, has_valid_pixel
from .context import FINGERPRINT, RunContext, command_record, fingerprint, load_product, log, up_to_date

#: Side of a part (pixels) when a grid is reduced in parts: a larger grid is computed window by
#: window, each window its own graph (~6,000 tasks at the usual 256-px blocks, built in seconds),
#: streamed into the one output file. `IMALYS_PART_PIXELS` overrides it.
PART_PIXELS = 8192

if TYPE_CHECKING:  # the cube, the kernels and the writer are imported when a result is computed: a
    # reduce whose product is up to date (a chain run again) needs none of them (~1 s of start-up)
    import xarray as xr


def part_side() -> int:
    from ..settings import current

    return current().part_pixels


def reduce_parts(build_cube, grid: Grid, reduce, side: int | None = None) -> tuple[xr.DataArray, xr.DataArray]:
    """`reduce(build_cube(window))` over `grid` in windows of at most `side` pixels (default
    `part_side()`): returns (result, the cube of the first window). One window: the plain lazy
    result. More: a DataArray over `Parts`, each part's graph built only when the writer reaches
    it; every pixel is the one the whole grid's graph gives (see tiles.read_stack)."""
    import xarray as xr

    from ..write.blocks import Parts, part_windows

    ny, nx = grid.shape
    windows = part_windows(ny, nx, side or part_side())
    first_cube = build_cube(windows[0] if len(windows) > 1 else None)
    first = reduce(first_cube)
    if len(windows) == 1:
        return first, first_cube
    parts = Parts((first.sizes["band"], ny, nx), first.dtype, windows,
                  lambda w: reduce(build_cube(w)).data, first=first.data)
    t = grid.transform  # the whole grid's coordinates, computed as the cube computes them
    coords = {k: v.variable for k, v in first.coords.items() if k not in ("y", "x")}
    coords.update(y=t.f + t.e * (np.arange(ny) + 0.5), x=t.c + t.a * (np.arange(nx) + 0.5))
    out = xr.DataArray(parts, dims=("band", "y", "x"), coords=coords, attrs=dict(first.attrs), name=first.name)
    return out, first_cube


def reduce_stack(*args, **kwargs):
    """composite.reduce_stack, imported on first use (with the kernels' module and dask.array)."""
    from ..composite import reduce_stack as reduce_now

    return reduce_now(*args, **kwargs)


def write_cog(*args, **kwargs) -> Path:
    """write.write_cog, imported on first use (the writer brings dask.array, xarray and pandas)."""
    from ..write import write_cog as write

    return write(*args, **kwargs)


def write_quicklook(*args, **kwargs) -> Path:
    """write.write_quicklook, imported on first use."""
    from ..write import write_quicklook as write

    return write(*args, **kwargs)


def layers_as_time(cube: xr.DataArray) -> xr.DataArray:
    """Without `preserve = bands` the original reduces the whole layer stack (all bands of all
    dates) to one band: fold the band axis into time, each layer keeping its image's quality."""
    import xarray as xr

    t, b = cube.sizes["time"], cube.sizes["band"]
    data = cube.transpose("time", "band", "y", "x").data.reshape((t * b, 1) + cube.shape[2:])
    quality = np.repeat(cube.coords["quality"].values, b)
    out = xr.DataArray(
        data, dims=("time", "band", "y", "x"),
        coords={"time": np.arange(t * b), "band": ["all"], "y": cube.y, "x": cube.x, "quality": ("time", quality)},
    )
    return out.rio.write_crs(cube.rio.crs)


def _why_empty(cube: xr.DataArray, method: str, p) -> str:
    """Why a reduce result holds no valid pixel, in the user's terms (for the warning)."""
    qualities = [float(q) for q in cube.coords["quality"].values]
    n = len(qualities)
    if max(qualities, default=0.0) <= 0.0:
        return (f"{'the only layer' if n == 1 else f'all {n} layers'} of {p.select} ha{'s' if n == 1 else 've'} no clear pixel "
                f"in the frame (quality 0) — raise quality in import so such images are not kept, or choose other dates")
    return (f"none of the {n} layer(s) of {p.select} (qualities {', '.join(f'{q:.2f}' for q in qualities)}) has a "
            f"pixel that {method} keeps — check its parameters (threshold, bands) and the frame")


def run(ctx: RunContext, cmd) -> None:
    try:
        _reduce(ctx, cmd)
    finally:
        # the quality tiles an import kept for this reduce (cube.tiles.keep_decoded_tiles): what it
        # did not take is needed no more (nothing was kept where the tile reader was never loaded)
        tiles = sys.modules.get("imalys_stac.cube.tiles")
        if tiles is not None:
            tiles.drop_kept_tiles()


def _reduce(ctx: RunContext, cmd) -> None:
    p = cmd.params
    wd = ctx.workdir
    source = load_product(ctx, cmd, p.select, hint="run compile (or import) first")
    if source.properties.get(KIND) not in ("import", "compile"):
        raise cmd.error(f"{p.select} is a {source.properties.get(KIND)} product; reduce works on a compiled stack or an imported image",
                        parameter="select")
    grid = Grid.from_stac(source.properties)
    if len(p.execute) > 1 and p.target:
        raise cmd.error("`target` names one result but `execute` is repeated; each result is stored under its process name",
                        parameter="target")
    for method in p.execute:
        name = p.target or method
        stamp = fingerprint(cmd, method, source.id, source.properties.get(FINGERPRINT))
        if up_to_date(wd, name, stamp):
            log.info("   %s: up to date (same input and parameters as the product in %s), kept", name, wd.path / name)
            continue
        from ..write.blocks import Parts

        def build_cube(window, source=source):
            return cube_of(wd, source, chunksize=ctx.chunksize, window=window)

        def reduce(cube, method=method):
            work = cube if (p.preserve == "bands" or not REDUCERS[method].per_band) else layers_as_time(cube)
            return reduce_stack(
                work, method, quality=work.coords["quality"].values, threshold=p.threshold,
                red=p.red, nir=p.nir, blue=getattr(p, "blue", None), count=p.count, source=p.source, flat=p.flat,
            )

        collapse = collapse_warning(method, source, p.preserve, REDUCERS[method].per_band)
        if collapse:
            log.warning(collapse)
        try:  # a large grid in parts (one bounded graph each); the first part is built here
            result, cube = reduce_parts(build_cube, grid, reduce)
        except ImalysError as exc:  # only what the user can fix is a located error; a bug stays a bug
            if isinstance(exc, ChainError):
                raise
            raise cmd.error(str(exc.args[0]) if exc.args else str(exc),
                            parameter=getattr(exc, "parameter", None) or "execute", hint=exc.hint) from exc
        if isinstance(result.data, Parts):
            log.info("   %s: %d × %d pixels in %d parts of at most %d² (one graph each)", name, grid.shape[1],
                     grid.shape[0], len(result.data.windows), part_side())
        unit = grid.crs.axis_info[0].unit_name if grid.crs.axis_info else "units"
        unit = {"metre": "m"}.get(unit, unit)
        bands, rows, cols = result.shape
        check_room_for((bands, rows, cols), result.dtype, wd.path, what=f"{name}",
                       pixel=f"{grid.resolution:g} {unit} of EPSG:{grid.epsg}")
        dates = [str(np.datetime_as_string(t, unit="D")) for t in cube.time.values]
        tags = {
            "IMALYS_PROCESS": method,
            "IMALYS_SOURCE": source.id,
            "IMALYS_DATES": ",".join(dates),
            "IMALYS_QUALITY": ",".join(f"{q:.3f}" for q in cube.quality.values),
        }
        with wd.scratch(name) as tmp:
            tif = Path(tmp) / f"{name}.tif"
            with dask_progress(method):
                try:
                    write_cog(result, tif, tags=tags)
                except gdal_errors() as exc:  # asked now: the clean-up of the scratch folder frees the disk
                    disk = as_disk_error(exc, tmp)
                    if disk is exc:
                        raise
                    raise disk from exc
            if not has_valid_pixel(tif):
                log.warning("   %s: the result has no valid pixel (all nodata): %s", name, _why_empty(cube, method, p))
            record = CompositeRecord(
                process=method, preserve=p.preserve, threshold=p.threshold if method == "bestof" else None,
                inputs=(source.id,), dates=tuple(dates), layers=int(cube.sizes["time"]),
                bands=tuple(str(b) for b in result.band.values),
                qualities=tuple(round(float(q), 6) for q in cube.quality.values),
            )
            # write_cog checked the file; its stamp survives the move into the product folder (a rename)
            item = derived_item(name, record, source, grid, {COMMAND: command_record(ctx, cmd), FINGERPRINT: stamp,
                                                             COG_CHECKED: file_stamp(tif)})
            item.add_asset("data", pystac.Asset(
                href=str(tif), media_type=pystac.MediaType.COG, roles=["data"],
                title=f"{method} of {source.id}",
            ))
            # a small preview from the COG's overviews, shown by STAC Browser
            png = write_quicklook(str(tif), Path(tmp) / f"{name}.png", max_size=512)
            item.add_asset("thumbnail", pystac.Asset(href=str(png), media_type=pystac.MediaType.PNG,
                                                     roles=["thumbnail"], title="Quicklook"))
            store(ctx.workdir, item, files={"data": tif, "thumbnail": png})
        log.info("   %s: %s over %d layer(s) → %s", name, method, cube.sizes["time"], wd.path / name / f"{name}.tif")
