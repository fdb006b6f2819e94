"""`export`: a product of the working directory → any path, format from the ending, plus a STAC
item beside it that records where it came from."""
from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

from .. import __version__
from ..products import KIND, archive_sources, cube_of, lineage
from ..runtime.progress import dask_progress
from ..workdir import write_json_atomic
from ..write import FORMATS, atomic_path, check_cog, write_image
from .context import Context, load_product, log


def _product_array(ctx: Context, item) -> xr.DataArray:
    kind = item.properties.get(KIND)
    if kind == "reduce":
        href = item.assets["data"].get_absolute_href()
        side = ctx.chunksize or 1024
        da = rioxarray.open_rasterio(href, chunks={"band": -1, "y": side, "x": side}, masked=True)
        names = item.properties.get("imalys:bands")
        if names and len(names) == da.sizes["band"]:
            da = da.assign_coords(band=names)
        return da
    cube = cube_of(ctx.workdir, item, chunksize=ctx.chunksize)
    if cube.sizes["time"] == 1:
        return cube.isel(time=0, drop=True)
    # a stack: bands ordered image by image, named date_band, as the original's layer stack
    dates = [str(np.datetime_as_string(t, unit="D")).replace("-", "") for t in cube.time.values]
    names = [f"{d}_{b}" for d in dates for b in cube.band.values]
    data = cube.data.reshape((-1,) + cube.shape[2:])
    return xr.DataArray(data, dims=("band", "y", "x"), coords={"band": names, "y": cube.y, "x": cube.x}).rio.write_crs(cube.rio.crs)


def run(ctx: Context, cmd) -> None:
    p = cmd.params
    item = load_product(ctx, cmd, p.select, hint="run reduce (or compile/import) first")
    target = Path(p.target).expanduser()
    ending = target.suffix.lower()
    if ending and ending not in FORMATS:
        raise cmd.error(f"unknown format {ending!r}", parameter="target",
                        hint="use one of " + ", ".join(e for e in FORMATS if e) + " or no ending for ENVI")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cmd.error(f"cannot create the folder {target.parent}: {exc.strerror or exc}", parameter="target") from exc
    tags = {"IMALYS_PRODUCT": item.id, "IMALYS_PROCESS": str(item.properties.get("imalys:process", item.properties.get(KIND)))}
    try:
        if item.properties.get(KIND) == "reduce" and ending in (".tif", ".tiff"):
            # Already a COG written by reduce: copying is exact and cheap.
            src = Path(item.assets["data"].get_absolute_href())
            with atomic_path(target) as tmp:
                shutil.copyfile(src, tmp)
        else:
            with dask_progress("export"):
                write_image(_product_array(ctx, item), target, tags=tags)
    except PermissionError as exc:
        raise cmd.error(f"cannot write {target}: permission denied", parameter="target",
                        hint="choose a folder you can write to") from exc
    except OSError as exc:
        raise cmd.error(f"cannot write {target}: {exc.strerror or exc}", parameter="target") from exc
    if ending in (".tif", ".tiff"):
        ok, errors, _ = check_cog(target)
        if not ok:
            raise cmd.error(f"{target} is not a valid COG: {'; '.join(errors)}", parameter="target")
    write_provenance(ctx, cmd, item, target)
    ctx.outputs.append(target)
    log.info("   exported %s → %s", item.id, target)


def item_path_for(target: Path) -> Path:
    """Where the STAC item of an exported file goes: `x.json` beside a COG `x.tif` (the usual
    pairing), `x.png.json` beside other formats so two exports of one name never share an item."""
    if target.suffix.lower() in (".tif", ".tiff"):
        return target.with_name(target.stem + ".json")
    return target.with_name(target.name + ".json")


def write_provenance(ctx: Context, cmd, item, target: Path) -> Path:
    """A STAC item beside the exported file: the product's item with the file as its asset and
    the provenance (archive items, chain text, every command's parameters, package version)."""
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    media = {".tif": "image/tiff; application=geotiff; profile=cloud-optimized", ".tiff": "image/tiff; application=geotiff; profile=cloud-optimized",
             ".png": "image/png", ".nc": "application/netcdf", ".zarr": "application/vnd+zarr", ".vrt": "application/xml"}
    data["assets"] = {"data": {"href": f"./{target.name}", "type": media.get(target.suffix.lower(), "application/octet-stream"), "roles": ["data"]}}
    data["links"] = [l for l in data.get("links", []) if l.get("rel") not in ("root", "parent", "self", "derived_from")]
    chain = ctx.chain
    data["properties"]["imalys:provenance"] = {
        "product": item.id,
        "working_directory": str(ctx.workdir.path),
        "archive_items": archive_sources(ctx.workdir, item),
        "chain": str(chain.path),
        "chain_text": Path(chain.path).read_text(encoding="utf-8", errors="replace") if Path(chain.path).exists() else None,
        "commands": [{"command": c.name, "line": c.line, "parameters": {k: v for k, v in c.raw.items()}} for c in chain.commands],
        # every product this file was computed from, with the command (chain, line, parameters)
        # that made it — imports made by an earlier chain included
        "lineage": lineage(ctx.workdir, item),
        "package": f"imalys-stac {__version__}",
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out = item_path_for(target)
    write_json_atomic(out, data)
    return out
