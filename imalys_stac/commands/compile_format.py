"""`compile format = int16`: the stack's pixels stored as scaled 16-bit integers.

By default a compile product is a lazy stack (a VRT over the imports, computed when reduce reads
it). With `format = int16` compile computes the stack once — calibrated, QA-masked and framed,
exactly the float32 cube reduce would read — and stores it as a COG of scaled integers, DN =
round((value − offset) / scale), nodata −9999, as export's int16 and FORCE do: half the bytes of
float32, the scale and offset in the file and in the item's `raster:bands` (odc-stac, stackstac
with `rescale=True` and GDAL calibrate back). `reduce` then reads the stored stack
(`cube.stored`): every value within half a scale step of the float32 path. The original's
`format = true` (keep the input type) keeps the stack as it is: imported reflectance is float32.
"""
from __future__ import annotations

from pathlib import Path

import pystac

from ..write.scaled import Scaling
from .context import RunContext, log

#: the layer names of a stored stack (date-major), as the compile's VRT names its bands
LAYER = "{date:%Y%m%d}_{band}"


def stack_scaling(cmd) -> Scaling | None:
    """`format = int16` (with `scale`, `offset`): how compile stores its stack; None keeps it lazy."""
    p = cmd.params
    if getattr(p, "format", None) != "int16":
        return None
    return Scaling(scale=float(p.scale), offset=float(p.offset))


def layer_names(times, products, bands) -> list[str]:
    """`<yyyymmdd>_<band>` per date and band, date-major, as compile's VRT names its bands; the
    second image of one day (another path) is named by its product: `<product>_<band>`."""
    names: list[str] = []
    for t, product in zip(times, products):
        for b in bands:
            name = LAYER.format(date=t, band=b)
            names.append(f"{product}_{b}" if name in names else name)
    return names


def write_scaled_stack(ctx: RunContext, item: pystac.Item, scaling: Scaling, tif: Path) -> dict[str, Path]:
    """Compute the compile product `item`'s stack (its float32 cube, in parts on a large grid as
    reduce computes it) and write it to `tif` as a scaled-integer COG; add the asset to `item`.
    Returns the files to store (asset key → path)."""
    import pandas as pd
    import xarray as xr

    from ..cube.grid import Grid
    from ..products import cube_of
    from ..runtime.progress import dask_progress
    from ..write import write_cog
    from .reduce import reduce_parts

    grid = Grid.from_stac(item.properties)

    def build_cube(window):
        return cube_of(ctx.workdir, item, chunksize=ctx.chunksize, window=window)

    def as_layers(cube: xr.DataArray) -> xr.DataArray:
        t, b = cube.sizes["time"], cube.sizes["band"]
        data = cube.data.reshape((t * b,) + cube.shape[2:])
        names = layer_names([pd.Timestamp(x).to_pydatetime() for x in cube.time.values],
                            [str(x) for x in cube["product"].values], [str(x) for x in cube.band.values])
        out = xr.DataArray(data, dims=("band", "y", "x"), coords={"band": names, "y": cube.y, "x": cube.x})
        return out.rio.write_crs(cube.rio.crs)

    stack, cube = reduce_parts(build_cube, grid, as_layers)
    names = [str(b) for b in stack.band.values]
    with dask_progress("compile"):
        # no overviews: reduce reads full resolution, and a preview of the stack is computed on its
        # own coarse grid from the imports (products.cube_of); they were half the writing time
        write_cog(stack, tif, band_names=names, scaling=scaling, overviews="none",
                  tags={"IMALYS_PROCESS": "compile", "IMALYS_LAYERS": "date-major: <yyyymmdd>_<band>"})
    item.add_asset("data", pystac.Asset(
        href=str(tif), media_type=pystac.MediaType.COG, roles=["data"],
        title=f"The stack as scaled 16-bit integers (value = DN · {scaling.scale:g} + {scaling.offset:g}, nodata "
              f"{scaling.nodata}), one band per date and band; QA mask and frame applied"))
    log.info("   %s: stack stored as int16 (scale %g, offset %g): %d layers, %.1f MB", item.id, scaling.scale,
             scaling.offset, len(names), tif.stat().st_size / 1e6)
    return {"data": tif}
