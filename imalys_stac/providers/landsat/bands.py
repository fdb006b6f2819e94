"""Member tables of Landsat Collection 2 Level-2 archives, per sensor family.

Asset keys follow Microsoft Planetary Computer's ``landsat-c2-l2`` collection so that code and
users moving between the two find the same names. Wavelengths (µm) and FWHM are the USGS band
designations; fixed scales of the surface-temperature auxiliaries are from the USGS L2 Science
Product Guide (the MTL only lists the SR bands and the ST band, whose scales are read from it).
"""
from __future__ import annotations

from ...archives.bands import BandInfo


def _sr(n: int, key: str, cn: str, wl: float, fwhm: float, title: str) -> BandInfo:
    return BandInfo(
        f"SR_B{n}", key, f"{title} (surface reflectance, band {n})", cn, wl, fwhm,
        2.75e-5, -0.2, None, 0, ("data", "reflectance"), 30.0, str(n),
    )


def _st(n: int, key: str, wl: float, fwhm: float, gsd: float) -> BandInfo:
    return BandInfo(
        f"ST_B{n}", key, f"Surface temperature (band {n})", "lwir11" if n == 10 else "lwir",
        wl, fwhm, 0.00341802, 149.0, "kelvin", 0, ("data", "temperature"), gsd, f"ST_B{n}",
    )


_QA_PIXEL = BandInfo(
    "QA_PIXEL", "qa_pixel", "Pixel quality assessment (QA_PIXEL bit field)", nodata=1,
    roles=("cloud", "cloud-shadow", "snow-ice", "water-mask", "data-mask"),
)
_QA_RADSAT = BandInfo(
    "QA_RADSAT", "qa_radsat", "Radiometric saturation and terrain occlusion (bit field)",
    roles=("saturation",),
)
_ST_AUX = (
    BandInfo("ST_QA", "qa", "Surface temperature uncertainty", scale=0.01, offset=0.0, unit="kelvin",
             nodata=-9999, roles=("data",)),
    BandInfo("ST_TRAD", "trad", "Thermal radiance", scale=0.001, offset=0.0,
             unit="watt/steradian/square_meter/micrometer", nodata=-9999),
    BandInfo("ST_URAD", "urad", "Upwelled radiance", scale=0.001, offset=0.0,
             unit="watt/steradian/square_meter/micrometer", nodata=-9999),
    BandInfo("ST_DRAD", "drad", "Downwelled radiance", scale=0.001, offset=0.0,
             unit="watt/steradian/square_meter/micrometer", nodata=-9999),
    BandInfo("ST_ATRAN", "atran", "Atmospheric transmittance", scale=0.0001, offset=0.0, nodata=-9999),
    BandInfo("ST_EMIS", "emis", "Emissivity", scale=0.0001, offset=0.0, nodata=-9999),
    BandInfo("ST_EMSD", "emsd", "Emissivity standard deviation", scale=0.0001, offset=0.0, nodata=-9999),
    BandInfo("ST_CDIST", "cdist", "Cloud distance", scale=0.01, offset=0.0, unit="kilometer", nodata=-9999),
)

OLI_BANDS: tuple[BandInfo, ...] = (
    _sr(1, "coastal", "coastal", 0.44, 0.02, "Coastal/Aerosol"),
    _sr(2, "blue", "blue", 0.48, 0.06, "Blue"),
    _sr(3, "green", "green", 0.56, 0.06, "Green"),
    _sr(4, "red", "red", 0.65, 0.04, "Red"),
    _sr(5, "nir08", "nir08", 0.87, 0.03, "Near infrared"),
    _sr(6, "swir16", "swir16", 1.61, 0.09, "Short-wave infrared 1.6"),
    _sr(7, "swir22", "swir22", 2.2, 0.19, "Short-wave infrared 2.2"),
    _st(10, "lwir11", 10.9, 0.59, 100.0),
    _QA_PIXEL,
    _QA_RADSAT,
    BandInfo("SR_QA_AEROSOL", "qa_aerosol", "Aerosol quality assessment (bit field)", nodata=1,
             roles=("data-mask", "water-mask")),
    *_ST_AUX,
)

_TM_LIKE_QA = (
    BandInfo("SR_ATMOS_OPACITY", "atmos_opacity", "Atmospheric opacity", scale=0.001, offset=0.0,
             nodata=-9999),
    BandInfo("SR_CLOUD_QA", "cloud_qa", "Cloud quality assessment (LEDAPS bit field)",
             roles=("cloud", "cloud-shadow", "snow-ice", "water-mask")),
)

TM_BANDS: tuple[BandInfo, ...] = (
    _sr(1, "blue", "blue", 0.49, 0.07, "Blue"),
    _sr(2, "green", "green", 0.56, 0.08, "Green"),
    _sr(3, "red", "red", 0.66, 0.06, "Red"),
    _sr(4, "nir08", "nir08", 0.83, 0.14, "Near infrared"),
    _sr(5, "swir16", "swir16", 1.65, 0.2, "Short-wave infrared 1.6"),
    _sr(7, "swir22", "swir22", 2.22, 0.27, "Short-wave infrared 2.2"),
    _st(6, "lwir", 11.45, 2.1, 120.0),
    _QA_PIXEL,
    _QA_RADSAT,
    *_TM_LIKE_QA,
    *_ST_AUX,
)

ETM_BANDS: tuple[BandInfo, ...] = (
    _sr(1, "blue", "blue", 0.48, 0.07, "Blue"),
    _sr(2, "green", "green", 0.56, 0.08, "Green"),
    _sr(3, "red", "red", 0.66, 0.06, "Red"),
    _sr(4, "nir08", "nir08", 0.84, 0.13, "Near infrared"),
    _sr(5, "swir16", "swir16", 1.65, 0.2, "Short-wave infrared 1.6"),
    _sr(7, "swir22", "swir22", 2.2, 0.28, "Short-wave infrared 2.2"),
    _st(6, "lwir", 11.34, 2.05, 60.0),
    _QA_PIXEL,
    _QA_RADSAT,
    *_TM_LIKE_QA,
    *_ST_AUX,
)

#: sensor code of the product id -> (platform, instruments, band table)
SENSORS: dict[str, tuple[str, tuple[str, ...], tuple[BandInfo, ...]]] = {
    "LC09": ("landsat-9", ("oli", "tirs"), OLI_BANDS),
    "LC08": ("landsat-8", ("oli", "tirs"), OLI_BANDS),
    "LE07": ("landsat-7", ("etm+",), ETM_BANDS),
    "LT05": ("landsat-5", ("tm",), TM_BANDS),
    "LT04": ("landsat-4", ("tm",), TM_BANDS),
}

#: non-raster members: suffix (with extension) -> (asset key, media type, title)
METADATA_MEMBERS: dict[str, tuple[str, str, str]] = {
    "MTL.txt": ("mtl.txt", "text/plain", "Product metadata (ODL)"),
    "MTL.xml": ("mtl.xml", "application/xml", "Product metadata (XML)"),
    "MTL.json": ("mtl.json", "application/json", "Product metadata (JSON)"),
    "ANG.txt": ("ang", "text/plain", "Angle coefficients"),
}
