"""A GDAL VRT view of an import recipe, so a GIS can open the product without computing it.

The VRT crops each archive member to the product grid (SrcRect/DstRect), calibrates it
(ScaleRatio/ScaleOffset → Float32) and mosaics same-day tiles (sources later in the file paint
over earlier ones; each source's nodata is transparent, so fill never hides a neighbour). It
cannot express the QA mask: disturbed pixels stay visible in the VRT; the mask rule is in the
product item and applied whenever imalys-stac computes the product. Written only when the grid
is the archives' own (same CRS and pixel size), i.e. without reprojection.

Archive members are named by absolute ``/vsitar/`` (``/vsizip/``) paths: GDAL (3.10, measured)
resolves ``relativeToVRT="1"`` only for plain paths, a relative ``/vsitar/../x.tar/member`` is
"not recognized", so a recipe VRT names its archives where they were when it was written
(imalys-stac itself reads an import product through its ``sources`` items, whose hrefs are
relative). :func:`band_vrt`, one band of a file in the product folder, is relative and moves with it.
"""
from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from xml.sax.saxutils import escape

from pyproj import CRS

from ..gdalnames import gdal_name
from .grid import Grid, asset_grid
from .load import SceneGroup


def pixel_offset(own: Grid, grid: Grid) -> tuple[int, int] | None:
    """(column, row) of the first pixel of a raster on `own` within `grid`, or None when it does
    not lie on `grid`'s pixels (another CRS or pixel size, or not a whole-pixel shift): a VRT's
    simple sources only shift, they do not resample."""
    if own.epsg != grid.epsg or own.res_xy != grid.res_xy:
        return None
    dx = (own.bounds[0] - grid.bounds[0]) / grid.res_xy[0]
    dy = (grid.bounds[3] - own.bounds[3]) / grid.res_xy[1]
    if abs(dx - round(dx)) > 1e-6 or abs(dy - round(dy)) > 1e-6:
        return None
    return round(dx), round(dy)


def on_grid(own: Grid, grid: Grid) -> bool:
    """Whether a raster on `own` lies on `grid`'s pixels (same CRS and pixel size, whole-pixel offsets)."""
    return pixel_offset(own, grid) is not None


def vrt_possible(group: SceneGroup, grid: Grid) -> bool:
    return all(on_grid(asset_grid(it, key), grid) for it in group.items for key in group.keys)


def _dataset_head(grid: Grid) -> list[str]:
    """The opening lines of a VRT on `grid`: size, CRS and geotransform."""
    rows, cols = grid.shape
    t = grid.transform
    return [
        f'<VRTDataset rasterXSize="{cols}" rasterYSize="{rows}">',
        f"  <SRS>{escape(CRS.from_epsg(grid.epsg).to_wkt())}</SRS>",
        f"  <GeoTransform>{t.c!r}, {t.a!r}, 0.0, {t.f!r}, 0.0, {t.e!r}</GeoTransform>",
    ]


def recipe_vrt(group: SceneGroup, grid: Grid) -> str:
    """VRT XML for `group` on `grid` (call only when `vrt_possible`)."""
    rows, cols = grid.shape
    parts = _dataset_head(grid)
    for b, key in enumerate(group.keys, start=1):
        factor, offset = group.calibration.factors[b - 1], group.calibration.offsets[b - 1]
        parts += [f'  <VRTRasterBand dataType="Float32" band="{b}">', "    <NoDataValue>nan</NoDataValue>",
                  f"    <Description>{escape(key)}</Description>"]
        # reversed: in a VRT the last source wins; our merge takes the first tile's valid value
        for it in reversed(group.items):
            asset = it.assets[key]
            g = asset_grid(it, key)
            src_rows, src_cols = g.shape
            offset_in_grid = pixel_offset(g, grid)
            assert offset_in_grid is not None, "recipe_vrt needs vrt_possible"
            xoff, yoff = -offset_in_grid[0], -offset_in_grid[1]  # the grid's first pixel in the file
            nodata = (asset.extra_fields.get("raster:bands") or [{}])[0].get("nodata")
            parts += [
                "    <ComplexSource>",
                f'      <SourceFilename relativeToVRT="0">{escape(asset.href)}</SourceFilename>',
                "      <SourceBand>1</SourceBand>",
                f'      <SourceProperties RasterXSize="{src_cols}" RasterYSize="{src_rows}" DataType="UInt16"/>',
                f'      <SrcRect xOff="{xoff}" yOff="{yoff}" xSize="{cols}" ySize="{rows}"/>',
                f'      <DstRect xOff="0" yOff="0" xSize="{cols}" ySize="{rows}"/>',
                *( [f"      <NODATA>{nodata}</NODATA>"] if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)) else []),
                f"      <ScaleOffset>{offset!r}</ScaleOffset>",
                f"      <ScaleRatio>{factor!r}</ScaleRatio>",
                "    </ComplexSource>",
            ]
        parts.append("  </VRTRasterBand>")
    parts.append("</VRTDataset>")
    return "\n".join(parts) + "\n"


@lru_cache(maxsize=4)
def _header(path: str, inode: int, mtime_ns: int, size: int) -> tuple:
    """(rows, cols, transform, SRS WKT, per band (dtype, nodata, description, scale, offset, block
    shape)) of a raster, read once for all the single-band VRTs of one file (a compiled stack's
    has one per date and band: each open of the stack VRT parsed it again). Keyed by the file's
    inode, time and size, so a file written again (or replaced) is read again."""
    import rasterio

    with rasterio.open(gdal_name(path)) as ds:
        srs = ds.crs.to_wkt() if ds.crs is not None else ""
        # scales/offsets: a scaled-integer export's calibration
        bands = tuple(zip(ds.dtypes, ds.nodatavals, ds.descriptions, ds.scales, ds.offsets, ds.block_shapes))
        return ds.height, ds.width, ds.transform, srs, bands


def band_vrt(path: str | os.PathLike, band: int, relative_to: str | os.PathLike | None = None) -> str:
    """VRT XML of band `band` of the raster `path` alone (same grid, type, nodata and description),
    naming it relative to the folder `relative_to` (where the VRT goes) when given, so a product
    folder can move. GDAL uses the source's overviews through it (a full-extent simple source)."""
    st = os.stat(path)
    rows, cols, t, srs, bands = _header(str(path), st.st_ino, st.st_mtime_ns, st.st_size)
    dtype, nodata, desc, scale, offset, (by, bx) = bands[band - 1]
    gdal_type = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
                 "int32": "Int32", "uint64": "UInt64", "int64": "Int64", "float32": "Float32",
                 "float64": "Float64"}[dtype]
    if relative_to is not None:
        name, relative = Path(os.path.relpath(path, relative_to)).as_posix(), 1
    else:
        name, relative = str(path), 0
    parts = [f'<VRTDataset rasterXSize="{cols}" rasterYSize="{rows}">']
    if srs:
        parts.append(f"  <SRS>{escape(srs)}</SRS>")
    parts += [f"  <GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>",
              f'  <VRTRasterBand dataType="{gdal_type}" band="1" blockXSize="{bx}" blockYSize="{by}">']
    if nodata is not None:
        parts.append(f"    <NoDataValue>{'nan' if math.isnan(nodata) else repr(nodata)}</NoDataValue>")
    if desc:
        parts.append(f"    <Description>{escape(desc)}</Description>")
    if (scale, offset) != (1.0, 0.0):
        parts += [f"    <Offset>{offset!r}</Offset>", f"    <Scale>{scale!r}</Scale>"]
    parts += [
        "    <SimpleSource>",
        f'      <SourceFilename relativeToVRT="{relative}">{escape(name)}</SourceFilename>',
        f"      <SourceBand>{band}</SourceBand>",
        f'      <SourceProperties RasterXSize="{cols}" RasterYSize="{rows}" DataType="{gdal_type}" '
        f'BlockXSize="{bx}" BlockYSize="{by}"/>',
        f'      <SrcRect xOff="0" yOff="0" xSize="{cols}" ySize="{rows}"/>',
        f'      <DstRect xOff="0" yOff="0" xSize="{cols}" ySize="{rows}"/>',
        "    </SimpleSource>",
        "  </VRTRasterBand>",
        "</VRTDataset>",
    ]
    return "\n".join(parts) + "\n"


def stack_vrt(layers: list[tuple[str, int, Grid, str]], grid: Grid, relative_to: str | os.PathLike) -> str | None:
    """VRT XML of a compiled stack on `grid`: one Float32 band per layer (path of a file, its band,
    the file's grid, the layer's name), each placed by whole-pixel offsets, outside its file
    nodata. None when a layer would need resampling (another CRS, pixel size or alignment): a
    VRT source only shifts, and a stack that differs from what imalys-stac computes is not
    offered. Paths are written relative to `relative_to` (the compile's folder)."""
    rows, cols = grid.shape
    parts = _dataset_head(grid)
    for n, (path, band, own, name) in enumerate(layers, start=1):
        offset_in_grid = pixel_offset(own, grid)  # the file's first column and row in the stack
        if offset_in_grid is None:
            return None
        dx, dy = offset_in_grid
        src_rows, src_cols = own.shape
        # the part of the file inside the stack (GDAL wants source windows inside the source)
        c0, r0 = max(0, -dx), max(0, -dy)
        c1, r1 = min(src_cols, cols - dx), min(src_rows, rows - dy)
        parts += [f'  <VRTRasterBand dataType="Float32" band="{n}">', "    <NoDataValue>nan</NoDataValue>",
                  f"    <Description>{escape(name)}</Description>"]
        if c1 > c0 and r1 > r0:
            rel = Path(os.path.relpath(path, relative_to)).as_posix()
            parts += [
                "    <SimpleSource>",
                f'      <SourceFilename relativeToVRT="1">{escape(rel)}</SourceFilename>',
                f"      <SourceBand>{band}</SourceBand>",
                f'      <SourceProperties RasterXSize="{src_cols}" RasterYSize="{src_rows}" DataType="Float32"/>',
                f'      <SrcRect xOff="{c0}" yOff="{r0}" xSize="{c1 - c0}" ySize="{r1 - r0}"/>',
                f'      <DstRect xOff="{c0 + dx}" yOff="{r0 + dy}" xSize="{c1 - c0}" ySize="{r1 - r0}"/>',
                "    </SimpleSource>",
            ]
        parts.append("  </VRTRasterBand>")
    parts.append("</VRTDataset>")
    return "\n".join(parts) + "\n"



def write_warped_vrt(src: str | os.PathLike, grid: Grid, dst: str | os.PathLike) -> None:
    """A warped VRT (GDAL VRTWarpedDataset) of the raster `src` on `grid`, bilinear as compile
    resamples reflectance, NaN outside; GDAL names `src` relative to `dst` (same folder tree)."""
    import numpy as np
    import rasterio
    from rasterio import shutil as rio_shutil
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    rows, cols = grid.shape
    with rasterio.open(gdal_name(src)) as ds, WarpedVRT(ds, crs=grid.crs, transform=grid.transform, width=cols, height=rows,
                                             resampling=Resampling.bilinear, src_nodata=np.nan, nodata=np.nan) as vrt:
        rio_shutil.copy(vrt, gdal_name(dst), driver="VRT")
