"""The structural Cloud Optimized GeoTIFF check of rio-cogeo (``rio_cogeo.cogeo.cog_validate``), on
rasterio alone.

Importing ``rio_cogeo.cogeo`` loads morecantile, pydantic and click — ~0.25 s of CPU, as much as
the whole pixel work of a tutorial chain — for one function that only reads TIFF tags through
rasterio. This is that function, check for check and message for message (tests compare the two
on valid and broken files); ``quiet`` only, it prints nothing.

Adapted from rio-cogeo 7.0 (``rio_cogeo/cogeo.py``: ``cog_validate``, ``get_data_offset``),
Copyright (c) 2021, cogeotiff, BSD 3-Clause License: redistribution and use in source and binary
forms, with or without modification, are permitted provided that the copyright notice, this list
of conditions and the disclaimer are retained; neither the name of the copyright holder nor the
names of its contributors may be used to endorse or promote derived products without permission.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND.
"""
from __future__ import annotations

import os
import pathlib
from typing import Any

import rasterio


def _data_offset(src: Any, x: int, y: int, ix: int | None = None) -> int:
    value = src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=1, ovr=ix)
    return int(value) if value is not None else 0


def cog_validate(src_path: str | os.PathLike, strict: bool = False, config: dict | None = None,
                 quiet: bool = True) -> tuple[bool, list[str], list[str]]:
    """(is_valid, errors, warnings) of a COG, as ``rio_cogeo.cogeo.cog_validate(..., quiet=True)``."""
    errors: list[str] = []
    warnings: list[str] = []
    with rasterio.Env(**(config or {})):
        with rasterio.open(src_path) as src:
            if not src.driver == "GTiff":
                return False, ["The file is not a GeoTIFF"], warnings
            if any(pathlib.Path(x).suffix.lower() == ".ovr" for x in src.files):
                errors.append("Overviews found in external .ovr file. They should be internal")
            overviews = src.overviews(1)
            if src.width > 512 or src.height > 512:
                if src.block_shapes and src.block_shapes[0][1] == src.width:
                    errors.append("The file is greater than 512xH or 512xW, but is not tiled")
                if not overviews:
                    warnings.append("The file is greater than 512xH or 512xW, it is recommended "
                                    "to include internal overviews")
            ifd_offset = int(src.get_tag_item("IFD_OFFSET", "TIFF", bidx=1))
            # GDAL ≥ 3.1 writes a ghost header (< 200 bytes) before the first IFD
            if ifd_offset > 300:
                errors.append(f"The offset of the main IFD should be < 300. It is {ifd_offset} instead")
            ifd_offsets = [ifd_offset]
            ghost = src.get_tag_item("GDAL_STRUCTURAL_METADATA", "TIFF")
            if ghost is not None and "KNOWN_INCOMPATIBLE_EDITION=YES" in ghost:
                errors.append("This file used to have optimizations in its layout, "
                              "but those have been, at least partly, invalidated by later changes")
            if overviews and overviews != sorted(overviews):
                errors.append("Overviews should be sorted")
            for ix, dec in enumerate(overviews):
                if not dec > 1:
                    errors.append(f"Invalid Decimation {dec} for overview level {ix}")
                ifd_offsets.append(int(src.get_tag_item("IFD_OFFSET", "TIFF", bidx=1, ovr=ix)))
                if ifd_offsets[-1] < ifd_offsets[-2]:
                    if ix == 0:
                        errors.append(f"The offset of the IFD for overview of index {ix} is {ifd_offsets[-1]}, "
                                      "whereas it should be greater than the one of the main image, which is at "
                                      f"byte {ifd_offsets[-2]}")
                    else:
                        errors.append(f"The offset of the IFD for overview of index {ix} is {ifd_offsets[-1]}, "
                                      f"whereas it should be greater than the one of index {ix - 1}, which is at "
                                      f"byte {ifd_offsets[-2]}")
            block_size = src.block_shapes[0]
            data_offsets: list[int] = []
            yblocks = (src.height + block_size[1] - 1) // block_size[1]
            xblocks = (src.width + block_size[0] - 1) // block_size[0]
            first = next((o for o in (_data_offset(src, x, y) for y in range(yblocks) for x in range(xblocks))
                          if o > 0), None)
            if first is not None:
                data_offsets = [first]
            for ix, dec in enumerate(overviews):
                yblocks = (src.height // dec + block_size[1] - 1) // block_size[1]
                xblocks = (src.width // dec + block_size[0] - 1) // block_size[0]
                first = next((o for o in (_data_offset(src, x, y, ix) for y in range(yblocks)
                                          for x in range(xblocks)) if o > 0), None)
                if first is not None:
                    data_offsets.append(first)
            if data_offsets and data_offsets[-1] < ifd_offsets[-1]:
                if len(overviews) > 0:
                    errors.append("The offset of the first block of the smallest overview should be after its IFD")
                else:
                    errors.append("The offset of the first block of the image should be after its IFD")
            for i in range(len(data_offsets) - 2, 0, -1):
                if data_offsets[i] < data_offsets[i + 1]:
                    errors.append(f"The offset of the first block of overview of index {i - 1} should be after the "
                                  f"one of the overview of index {i}")
            if len(data_offsets) >= 2 and data_offsets[0] < data_offsets[1]:
                errors.append("The offset of the first block of the main resolution image should be after the one "
                              f"of the overview of index {len(overviews) - 1}")
        for ix, _dec in enumerate(overviews):
            with rasterio.open(src_path, OVERVIEW_LEVEL=ix) as ovr:
                if (ovr.width > 512 or ovr.height > 512) and ovr.block_shapes and ovr.block_shapes[0][1] == ovr.width:
                    errors.append(f"Overview of index {ix} is not tiled")
    return not (errors or (warnings and strict)), errors, warnings


__all__ = ["cog_validate"]
