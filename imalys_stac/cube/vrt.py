"""A GDAL VRT view of an import recipe, so a GIS can open the product without computing it.

The VRT crops each archive member to the product grid (SrcRect/DstRect), calibrates it
(ScaleRatio/ScaleOffset → Float32) and mosaics same-day tiles (sources later in the file paint
over earlier ones; each source's nodata is transparent, so fill never hides a neighbour). It
cannot express the QA mask: disturbed pixels stay visible in the VRT; the mask rule is in the
product item and applied whenever imalys-stac computes the product. Written only when the grid
is the archives' own (same CRS and pixel size), i.e. without reprojection.
"""
from __future__ import annotations

import math
from xml.sax.saxutils import escape

from pyproj import CRS

from .grid import Grid, asset_grid
from .load import SceneGroup


def vrt_possible(group: SceneGroup, grid: Grid) -> bool:
    for it in group.items:
        for key in group.keys:
            g = asset_grid(it, key)
            if g.epsg != grid.epsg or g.res_xy != grid.res_xy:
                return False
            # whole-pixel offsets only (no resampling in a simple source)
            dx = (grid.bounds[0] - g.bounds[0]) / g.res_xy[0]
            dy = (g.bounds[3] - grid.bounds[3]) / g.res_xy[1]
            if abs(dx - round(dx)) > 1e-6 or abs(dy - round(dy)) > 1e-6:
                return False
    return True


def recipe_vrt(group: SceneGroup, grid: Grid) -> str:
    """VRT XML for `group` on `grid` (call only when `vrt_possible`)."""
    rows, cols = grid.shape
    t = grid.transform
    parts = [
        f'<VRTDataset rasterXSize="{cols}" rasterYSize="{rows}">',
        f"  <SRS>{escape(CRS.from_epsg(grid.epsg).to_wkt())}</SRS>",
        f"  <GeoTransform>{t.c!r}, {t.a!r}, 0.0, {t.f!r}, 0.0, {t.e!r}</GeoTransform>",
    ]
    for b, key in enumerate(group.keys, start=1):
        factor, offset = group.calibration.factors[b - 1], group.calibration.offsets[b - 1]
        parts += [f'  <VRTRasterBand dataType="Float32" band="{b}">', "    <NoDataValue>nan</NoDataValue>",
                  f"    <Description>{escape(key)}</Description>"]
        # reversed: in a VRT the last source wins; our merge takes the first tile's valid value
        for it in reversed(group.items):
            asset = it.assets[key]
            g = asset_grid(it, key)
            src_rows, src_cols = g.shape
            xoff = round((grid.bounds[0] - g.bounds[0]) / g.res_xy[0])
            yoff = round((g.bounds[3] - grid.bounds[3]) / g.res_xy[1])
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
