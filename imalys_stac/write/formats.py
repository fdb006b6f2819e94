"""netCDF, Zarr and VRT outputs, streamed through the same block sink as the COG."""
from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import xarray as xr

from ..gdalnames import vrt_bytes
from .atomic import atomic_path
from .blocks import stream
from .cog import write_cog
from .raster import Raster, as_raster
from .scaled import Scaling


def variable_name(path: Path) -> str:
    """The data variable is named after the product (file stem), made a valid identifier."""
    name = re.sub(r"\W", "_", path.stem) or "data"
    return name if not name[0].isdigit() else f"v_{name}"


def _centres(r: Raster) -> tuple[np.ndarray, np.ndarray]:
    t = r.transform
    x = t.c + t.a * (np.arange(r.width) + 0.5)
    y = t.f + t.e * (np.arange(r.height) + 0.5)
    return x, y


def _chunks(r: Raster) -> tuple[int, int, int]:
    if hasattr(r.data, "chunks"):
        c = r.data.chunks
        return (c[0][0], c[1][0], c[2][0])
    return (1, min(512, r.height), min(512, r.width))


class _ArraySink:
    """Block sink for anything indexable by slices (h5py/h5netcdf variables, zarr arrays)."""

    def __init__(self, target: Any, dtype: np.dtype):
        self.target, self.dtype = target, dtype

    def __setitem__(self, key: tuple[slice, ...], value: np.ndarray) -> None:
        self.target[key] = np.asarray(value, dtype=self.dtype)


def _grid_attrs(r: Raster) -> dict[str, Any]:
    """CF grid mapping attributes as rioxarray/GDAL write and read them."""
    t = r.transform
    attrs: dict[str, Any] = {"GeoTransform": " ".join(repr(float(v)) for v in (t.c, t.a, t.b, t.f, t.d, t.e))}
    if r.crs is not None:
        from pyproj import CRS as ProjCRS

        crs = ProjCRS.from_user_input(r.crs.to_wkt())
        attrs.update(crs.to_cf())
        attrs["crs_wkt"] = crs.to_wkt()
        attrs["spatial_ref"] = crs.to_wkt()
    return attrs


def write_netcdf(da: xr.DataArray, path: str | os.PathLike, *, tags: dict[str, Any] | None = None,
                 band_names: Sequence[str] | None = None, level: int = 1) -> Path:
    """netCDF-4 (HDF5, via h5netcdf): one variable (band, y, x) named after the file, x/y cell
    centres, a CF `spatial_ref` grid mapping, band names, `tags` as global attributes; chunked,
    gzip `level` with shuffle, streamed block by block."""
    import h5netcdf

    path = Path(path).expanduser()
    r = as_raster(da, band_names=band_names, tags=tags)
    x, y = _centres(r)
    name = variable_name(path)
    geographic = r.crs is not None and r.crs.is_geographic
    with atomic_path(path) as tmp:
        with h5netcdf.File(tmp, "w") as f:
            f.dimensions = {"band": r.count, "y": r.height, "x": r.width}
            f.attrs.update({"Conventions": "CF-1.8", **r.tags})
            if r.band_names:
                import h5py

                f.create_variable("band", ("band",), dtype=h5py.string_dtype(),
                                  data=np.array(r.band_names, dtype=object))
            else:
                f.create_variable("band", ("band",), data=np.arange(1, r.count + 1, dtype="int32"))
            vx = f.create_variable("x", ("x",), data=x)
            vy = f.create_variable("y", ("y",), data=y)
            vx.attrs.update({"standard_name": "longitude" if geographic else "projection_x_coordinate",
                             "units": "degrees_east" if geographic else "metre", "axis": "X"})
            vy.attrs.update({"standard_name": "latitude" if geographic else "projection_y_coordinate",
                             "units": "degrees_north" if geographic else "metre", "axis": "Y"})
            sr = f.create_variable("spatial_ref", (), dtype="int32")
            sr.attrs.update(_grid_attrs(r))
            kw: dict[str, Any] = {}
            if r.nodata is not None:
                kw["fillvalue"] = r.dtype.type(r.nodata)
            v = f.create_variable(name, ("band", "y", "x"), dtype=r.dtype, chunks=_chunks(r),
                                  compression="gzip", compression_opts=level, shuffle=True, **kw)
            v.attrs["grid_mapping"] = "spatial_ref"
            v.attrs["coordinates"] = "spatial_ref"  # xarray then keeps it as a coordinate (rioxarray reads the CRS)
            stream(r.data, _ArraySink(v, r.dtype))
    return path


def write_zarr(da: xr.DataArray, path: str | os.PathLike, *, tags: dict[str, Any] | None = None,
               band_names: Sequence[str] | None = None) -> Path:
    """Zarr store (a directory): metadata and coordinates through xarray, then the data chunk by
    chunk into the zarr array from this process; readable with `xarray.open_zarr`."""
    import dask.array as dsa
    import zarr

    path = Path(path).expanduser()
    r = as_raster(da, band_names=band_names, tags=tags)
    x, y = _centres(r)
    name = variable_name(path)
    chunks = _chunks(r)
    band = r.band_names if r.band_names else np.arange(1, r.count + 1)
    # the template's data is never computed: to_zarr(compute=False) writes metadata and coords only
    template = xr.DataArray(dsa.empty(data_shape := (r.count, r.height, r.width), chunks=chunks, dtype=r.dtype),
                            dims=("band", "y", "x"), coords={"band": band, "y": y, "x": x}, name=name)
    if r.crs is not None:
        template = template.rio.write_crs(r.crs)
    template = template.rio.write_transform(r.transform)
    ds = template.to_dataset()
    ds.attrs.update(r.tags)
    encoding = {name: {"chunks": chunks}}
    if r.nodata is not None:
        encoding[name]["_FillValue"] = r.dtype.type(r.nodata)
    with atomic_path(path) as tmp:
        # Zarr v2: string band names are stable there (v3 warns), and every reader knows it
        ds.to_zarr(tmp, mode="w", compute=False, encoding=encoding, consolidated=True, zarr_format=2)
        arr = zarr.open_array(store=str(tmp), path=name, mode="r+")
        assert tuple(arr.shape) == data_shape
        if r.crs is not None:  # as in the netCDF: plain open_zarr then sees the CRS coordinate
            arr.attrs["coordinates"] = "spatial_ref"
            zarr.consolidate_metadata(str(tmp))
        stream(r.data, _ArraySink(arr, r.dtype))
    return path


def vrt_xml(r: Raster, source: str, scaling: Scaling | None = None) -> str:
    """A VRT that maps every band 1:1 onto `source` (a path relative to the VRT); with `scaling`
    the source holds scaled integers, and the VRT says so (type, nodata, scale and offset)."""
    t = r.transform
    dtype = scaling.dtype if scaling else r.dtype.name
    nodata = scaling.nodata if scaling else r.nodata
    gdal_type = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
                 "int32": "Int32", "uint64": "UInt64", "int64": "Int64", "float32": "Float32",
                 "float64": "Float64"}[dtype]
    out = [f'<VRTDataset rasterXSize="{r.width}" rasterYSize="{r.height}">']
    if r.crs is not None:
        out.append(f"  <SRS>{escape(r.crs.to_wkt())}</SRS>")
    out.append("  <GeoTransform>" + ", ".join(repr(float(v)) for v in (t.c, t.a, t.b, t.f, t.d, t.e)) + "</GeoTransform>")
    if r.tags:
        out.append("  <Metadata>")
        out += [f'    <MDI key="{escape(k, {chr(34): "&quot;"})}">{escape(v)}</MDI>' for k, v in r.tags.items()]
        out.append("  </Metadata>")
    for i in range(1, r.count + 1):
        out.append(f'  <VRTRasterBand dataType="{gdal_type}" band="{i}">')
        if r.band_names:
            out.append(f"    <Description>{escape(r.band_names[i - 1])}</Description>")
        if nodata is not None:
            nd = "nan" if isinstance(nodata, float) and math.isnan(nodata) else repr(nodata)
            out.append(f"    <NoDataValue>{nd}</NoDataValue>")
        if scaling is not None:
            out.append(f"    <Offset>{scaling.offset!r}</Offset>")
            out.append(f"    <Scale>{scaling.scale!r}</Scale>")
        out += [
            "    <SimpleSource>",
            f'      <SourceFilename relativeToVRT="1">{escape(source)}</SourceFilename>',
            f"      <SourceBand>{i}</SourceBand>",
            f'      <SrcRect xOff="0" yOff="0" xSize="{r.width}" ySize="{r.height}"/>',
            f'      <DstRect xOff="0" yOff="0" xSize="{r.width}" ySize="{r.height}"/>',
            "    </SimpleSource>",
            "  </VRTRasterBand>",
        ]
    out.append("</VRTDataset>")
    return "\n".join(out) + "\n"


def write_vrt(da: xr.DataArray, path: str | os.PathLike, *, tags: dict[str, Any] | None = None,
              band_names: Sequence[str] | None = None, **cog_options: Any) -> Path:
    """A VRT at `path` pointing (relative path) at a COG `<stem>.tif` written beside it."""
    path = Path(path).expanduser()
    r = as_raster(da, band_names=band_names, tags=tags)
    tif = path.with_suffix(".tif")
    write_cog(da, tif, tags=tags, band_names=band_names, **cog_options)
    with atomic_path(path) as tmp:
        tmp.write_bytes(vrt_bytes(vrt_xml(r, tif.name, cog_options.get("scaling"))))
    return path
