"""One raster member of a provider archive and how its numbers read (the providers' band tables
are lists of these: ``imalys_stac.providers.<name>``)."""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class BandInfo:
    """One raster member of an archive and how its numbers read."""

    suffix: str  # member suffix after the product id, without ".TIF" (e.g. "SR_B2")
    key: str  # asset key ("blue")
    title: str
    common_name: str | None = None
    wavelength: float | None = None  # centre, µm
    fwhm: float | None = None  # µm
    scale: float | None = None
    offset: float | None = None
    unit: str | None = None
    nodata: float | int | None = None
    roles: tuple[str, ...] = ("data",)
    gsd: float = 30.0
    mtl_band: str | None = None  # band label in the MTL scale keys ("1", "ST_B10")

    def with_calibration(self, scale: float | None, offset: float | None) -> BandInfo:
        return replace(self, scale=scale, offset=offset)
