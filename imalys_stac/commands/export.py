"""`export`: a product of the working directory → any path, format from the ending, plus a STAC
item beside it that records where it came from."""
from __future__ import annotations

import json
import math
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..cube.grid import Grid
from ..gdalnames import gdal_name
from ..product_records import COG_CHECKED, PROCESS, PROVENANCE, CompositeRecord, ExportRecord, Provenance, RecordError, file_stamp
from ..products import KIND, RASTER_EXT, archive_sources, cube_of, export_links, export_view, exported_band_fields, lineage
from ..registry import FORMATS as FORMAT_REGISTRY
from ..registry import companion_paths
from ..runtime.progress import dask_progress
from ..write import write_image
from ..write.atomic import recover_swaps, replace, scratch_dir, sweep_stale, write_json_atomic
from ..write.quicklook import QUICKLOOK_SIDE
from ..write.scaled import Scaling
from .context import FINGERPRINT, RunContext, fingerprint, load_product, log, os_reason


def _quicklook_grid(item, side: int) -> Grid | None:
    """A grid over the product's area with at most `side` pixels a side (None: its own is that
    small): a PNG of a compiled stack or an imported image is read onto it, so no layer is
    computed at full resolution for a picture of 1024 pixels."""
    own = Grid.from_stac(item.properties)
    f = math.ceil(max(own.shape) / side)
    if f <= 1:
        return None
    left, _, _, top = own.bounds
    rx, ry = own.res_xy
    return Grid.aligned(own.epsg, own.bounds, rx * f, anchor=(left, top), yres=ry * f if ry != rx else None)


if TYPE_CHECKING:  # the arrays and the COG writer are imported where an export computes or checks one:
    # copying the COG reduce wrote and checked needs neither (xarray, pandas, dask.array: ~1 s)
    import xarray as xr


def check_cog(path: Path) -> tuple[bool, list[str], list[str]]:
    """write.check_cog, imported where an export checks a COG (with the writer: dask.array, xarray)."""
    from ..write import check_cog as check

    return check(path)


def _invalid_cog() -> type[Exception]:
    """write_cog's InvalidCOG (read when an exception is matched against it: only a run that wrote
    a COG can have raised it, and that run imported the writer already)."""
    from ..write.cog import InvalidCOG

    return InvalidCOG


def _product_array(ctx: RunContext, item, quicklook: bool = False) -> xr.DataArray:
    import rioxarray  # registers .rio
    import xarray as xr

    kind = item.properties.get(KIND)
    if kind == "reduce":
        href = item.assets["data"].get_absolute_href()
        side = ctx.chunksize or 1024
        da = rioxarray.open_rasterio(gdal_name(href), chunks={"band": -1, "y": side, "x": side}, masked=True)
        if not isinstance(da, xr.DataArray):  # reduce writes one GeoTIFF, never a file of subdatasets
            raise RecordError(f"{href} holds several rasters, not the one composite reduce wrote")
        names = list(CompositeRecord.from_item(item).bands)
        if names and len(names) == da.sizes["band"]:
            da = da.assign_coords(band=names)
        return da
    grid = _quicklook_grid(item, QUICKLOOK_SIDE) if quicklook else None
    cube = cube_of(ctx.workdir, item, chunksize=ctx.chunksize, grid=grid)
    if cube.sizes["time"] == 1:
        return cube.isel(time=0, drop=True)
    # a stack: bands ordered image by image, named date_band, as the original's layer stack
    dates = [str(np.datetime_as_string(t, unit="D")).replace("-", "") for t in cube.time.values]
    names = [f"{d}_{b}" for d in dates for b in cube.band.values]
    data = cube.data.reshape((-1,) + cube.shape[2:])
    return xr.DataArray(data, dims=("band", "y", "x"), coords={"band": names, "y": cube.y, "x": cube.x}).rio.write_crs(cube.rio.crs)


def written_by_us(target: Path) -> bool:
    """Whether `target` was written by an imalys-stac export: its STAC item beside it says so."""
    item = item_path_for(target)
    try:
        data = json.loads(item.read_text(encoding="utf-8"))
        return (PROVENANCE in data.get("properties", {})
                and data.get("assets", {}).get("data", {}).get("href") == f"./{target.name}")
    except (OSError, ValueError, AttributeError):
        return False


def export_owning(path: Path) -> tuple[Path, tuple[str, str]] | None:
    """The export that wrote `path` (as its target or as a file beside it, e.g. the COG `x.tif` of
    a VRT `x.vrt`): its target and (product, working directory); None when no export claims it."""
    candidates = [path] if path.suffix.lower() in FORMAT_REGISTRY else []
    for ending, fmt in FORMAT_REGISTRY.items():
        for companion in fmt.companions:
            if fmt.companions_appended and path.name.lower().endswith(companion):
                candidates.append(path.with_name(path.name[: -len(companion)]))
            elif not fmt.companions_appended and path.suffix.lower() == companion:
                candidates.append(path.with_suffix(ending))
    for target in candidates:
        if target.suffix.lower() not in FORMAT_REGISTRY or path not in companion_paths(target):
            continue
        if written_by_us(target):
            try:
                props = json.loads(item_path_for(target).read_text(encoding="utf-8"))["properties"]
                record = ExportRecord.from_properties(props)
            except (OSError, ValueError, KeyError, TypeError, RecordError):
                continue
            return target, (record.provenance.product, record.provenance.working_directory)
    return None


def run(ctx: RunContext, cmd) -> None:
    p = cmd.params
    item = load_product(ctx, cmd, p.select, hint="run reduce (or compile/import) first")
    target = Path(p.target).expanduser().absolute()
    ending = target.suffix.lower()
    fmt = FORMAT_REGISTRY.get(ending)
    if fmt is None:
        raise cmd.error(f"unknown format {ending!r}", parameter="target",
                        hint="use one of " + ", ".join(e for e in FORMAT_REGISTRY if e) + " or no ending for ENVI")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cmd.error(f"cannot create the folder {target.parent}: {exc.strerror or exc}", parameter="target") from exc
    item_path = item_path_for(target)
    ours = written_by_us(target)
    overwrite = bool(getattr(p, "overwrite", False))
    for path in (*companion_paths(target), item_path):
        if path.exists() and not ours and not overwrite:
            # a file beside the target may be another export's (x.tif beside x.vrt): the same product's may be replaced
            owner = export_owning(path) if path != item_path else None
            if owner is None:
                raise cmd.error(f"{path} exists and was not written by imalys-stac", parameter="target",
                                hint="choose another target, or add `overwrite = true` to replace it")
            if owner[1] != (item.id, str(ctx.workdir.path)):
                raise cmd.error(f"{path} was written by the export of {owner[1][0]} to {owner[0].name}; this export "
                                f"of {item.id} would replace it", parameter="target",
                                hint="choose another target, or add `overwrite = true` to replace it")
        if path.is_dir() and not (fmt.directory and path == target):
            raise cmd.error(f"{path} is a folder; the export would replace it with a file", parameter="target",
                            hint="choose another target")
    for name in recover_swaps(target.parent):
        log.info("   restored %s (a run was stopped while replacing it)", target.parent / name)
    for stale in sweep_stale(target.parent):
        log.info("   removed %s (temporary file of a stopped run)", stale)

    stamp = fingerprint(cmd, item.id, item.properties.get(FINGERPRINT))
    if ours and _up_to_date(item_path, target, stamp):
        log.info("   %s: up to date (same product and parameters), kept", target)
        ctx.outputs.append(target)
        return

    scaling = _scaling(cmd)
    copy_cog = item.properties.get(KIND) == "reduce" and ending in (".tif", ".tiff") and scaling is None
    array = None if copy_cog else _product_array(ctx, item, quicklook=ending == ".png")
    if array is not None and fmt.needs_free_space:
        # ENVI is written uncompressed; HDF5 (netCDF) crashes the process on a full disk instead of
        # raising, so both are checked against the free space before anything is written
        need = int(np.prod(array.shape)) * array.dtype.itemsize
        free = shutil.disk_usage(target.parent).free
        if need > free:
            raise cmd.error(f"cannot write {target}: it needs {need / 1e6:.1f} MB and {target.parent} has "
                            f"{free / 1e6:.1f} MB free; nothing was written", parameter="target",
                            hint="free some space or choose another folder")
    tags = {"IMALYS_PRODUCT": item.id, "IMALYS_PROCESS": str(item.properties.get(PROCESS, item.properties.get(KIND)))}
    # Everything is written and checked inside a scratch folder beside the target; only then do the
    # item and the files move into place (item first: a stop between the renames leaves an item
    # whose stamp does not match the file, so the next run redoes the export).
    try:
        with scratch_dir(target.parent, target.name) as scratch:
            out = scratch / target.name
            checked = False
            if array is None:  # copy_cog
                # Already a COG written by reduce: copying is exact and cheap, and a file that is
                # still the one write_cog checked (same size and time) needs no second check.
                source_tif = Path(item.assets["data"].get_absolute_href())
                stamp_now = file_stamp(source_tif)
                checked = stamp_now is not None and item.properties.get(COG_CHECKED) == stamp_now
                shutil.copyfile(source_tif, out)
            else:
                with dask_progress("export"):
                    options: dict[str, Any] = {"scaling": scaling} if scaling else {}  # only COG/VRT take it
                    write_image(array, out, tags=tags, **options)
            if checked:
                log.debug("   %s: a copy of the COG reduce checked (unchanged since), not checked again", target)
            elif ending in (".tif", ".tiff"):
                ok, errors, _ = check_cog(out)
                if not ok:
                    raise cmd.error(f"the written file is not a valid COG: {'; '.join(errors)}; nothing was replaced",
                                    parameter="target")
            data = provenance_item(ctx, cmd, item, target, stamp, file_stamp(out), written_file=out, scaling=scaling,
                                   bands=int(array.shape[0]) if array is not None and array.ndim == 3 else 1)
            files = [f for f in scratch.iterdir()]  # with the band views provenance_item wrote
            write_json_atomic(scratch / item_path.name, data)
            os.replace(scratch / item_path.name, item_path)
            for f in files:
                replace(f, target.parent / f.name)
    except _invalid_cog() as exc:
        raise cmd.error(f"the written file is not a valid COG: {exc}; nothing was replaced", parameter="target") from exc
    except OSError as exc:
        reason, hint = os_reason(exc, target.parent)
        raise cmd.error(f"cannot write {target}: {reason}; nothing was replaced", parameter="target", hint=hint) from exc
    ctx.outputs.append(target)
    log.info("   exported %s → %s", item.id, target)


def _scaling(cmd) -> Scaling | None:
    """`format = int16` (with `scale`, `offset`): how the export encodes reflectance; None for float32."""
    p = cmd.params
    if getattr(p, "format", "float32") != "int16":
        return None
    return Scaling(scale=float(p.scale), offset=float(p.offset))


def scaled_band_fields(fields: dict, count: int, scaling: Scaling) -> dict:
    """`raster:bands` of a scaled-integer file: each band's data type, nodata, scale and offset
    (the STAC raster extension's calibration, which stackstac applies with `rescale=True` and
    odc-stac users apply by hand), the product's other band fields (unit, resolution) kept."""
    bands = [dict(b) for b in fields.get("raster:bands", [])]
    bands = bands if len(bands) == count else [{} for _ in range(count)]
    for b in bands:
        b.update({"data_type": scaling.dtype, "nodata": scaling.nodata, "scale": scaling.scale, "offset": scaling.offset})
    return {**fields, "raster:bands": bands}


def _up_to_date(item_path: Path, target: Path, stamp: str) -> bool:
    try:
        data = json.loads(item_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    try:
        record = ExportRecord.from_properties(data.get("properties", {}))
    except (RecordError, KeyError, TypeError, AttributeError):  # not (or no longer) an export's item
        return False
    return record.fingerprint == stamp and record.file is not None and list(record.file) == file_stamp(target)


def item_path_for(target: Path) -> Path:
    """Where the STAC item of an exported file goes: `x.json` beside a COG `x.tif` (the usual
    pairing), `x.png.json` beside other formats and `x.envi.json` beside an ENVI `x` (no ending),
    so two exports of one name never share an item."""
    ending = target.suffix.lower()
    if ending in (".tif", ".tiff"):
        return target.with_name(target.stem + ".json")
    if not ending:
        return target.with_name(target.name + ".envi.json")
    return target.with_name(target.name + ".json")


def provenance_item(ctx: RunContext, cmd, item, target: Path, stamp: str, written: list[int | str] | None,
                    written_file: Path | None = None, scaling: Scaling | None = None, bands: int = 1) -> dict:
    """The STAC item beside the exported file: the product's item with the file as its asset and
    the provenance (archive items, chain text, every command's parameters, package version).
    `written_file`: the file as written (in the scratch folder), whose bands the item describes."""
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    # the file's own id (its item's name): exports of one product to several files must not
    # share an id in a catalog of the results folder
    data["id"] = item_path_for(target).name[: -len(".json")]
    fmt = FORMAT_REGISTRY[target.suffix.lower()]
    data["assets"] = {"data": {"href": f"./{target.name}", "type": fmt.media_type, "roles": list(fmt.roles)}}
    data["links"] = export_links(ctx.workdir, item, item_path_for(target))  # derived_from the product
    fields = exported_band_fields(item, written_file or target)
    if scaling is not None:
        fields = scaled_band_fields(fields, bands, scaling)
        if RASTER_EXT not in data.setdefault("stac_extensions", []):
            data["stac_extensions"].append(RASTER_EXT)
    data["assets"]["data"].update(fields)
    export_view(data, target, written_file)  # title, thumbnail, band views
    chain = ctx.chain
    provenance = Provenance(
        product=item.id,
        working_directory=str(ctx.workdir.path),
        archive_items=tuple(archive_sources(ctx.workdir, item)),
        chain=str(chain.path),
        chain_text=Path(chain.path).read_text(encoding="utf-8", errors="replace") if Path(chain.path).exists() else None,
        commands=tuple({"command": c.name, "line": c.line, "parameters": {k: v for k, v in c.raw.items()}} for c in chain.commands),
        # every product this file was computed from, with the command (chain, line, parameters)
        # that made it — imports made by an earlier chain included
        lineage=tuple(lineage(ctx.workdir, item)),
        package=f"imalys-stac {__version__}",
        exported=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    # the file's size and modification time (rename keeps both) say later whether it is still ours
    file = (written[0], written[1]) if written is not None else None
    data["properties"].update(ExportRecord(provenance, stamp, file).to_properties())
    return data
