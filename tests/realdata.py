"""The real USGS Landsat 8 C2 L2 file set in ``tests/data/real/`` (see its README/licence),
tarred flat as USGS ships it, for tests that must see real data rather than synthetic archives."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

REAL_DIR = Path(__file__).parent / "data" / "real"
PRODUCT_ID = "LC08_L2SP_008059_20191201_20200825_02_T1"
#: members a real archive holds that the file set keeps (the USGS *_stac.json are not in tars)
MEMBER_SUFFIXES = (
    "SR_B1.TIF", "SR_B2.TIF", "SR_B3.TIF", "SR_B4.TIF", "SR_B5.TIF", "SR_B6.TIF", "SR_B7.TIF",
    "ST_B10.TIF", "QA_PIXEL.TIF", "QA_RADSAT.TIF", "SR_QA_AEROSOL.TIF",
    "MTL.txt", "MTL.xml", "MTL.json", "ANG.txt",
)
USGS_ITEM = REAL_DIR / PRODUCT_ID / f"{PRODUCT_ID}_SR_stac.json"


def tar_real_scene(dest_folder: str | Path, name: str | None = None) -> Path:
    """Write ``<dest>/<product id>.tar`` with the real members at the tar root; return its path."""
    dest = Path(dest_folder)
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / (name or f"{PRODUCT_ID}.tar")
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        for suffix in MEMBER_SUFFIXES:
            f = REAL_DIR / PRODUCT_ID / f"{PRODUCT_ID}_{suffix}"
            tar.add(f, arcname=f.name)
    return out


def tar_real_variant(dest_folder: str | Path, *, sensor: str = "LC08", path: int = 8, row: int = 59,
                     acquired: str = "20191201", cloud: float | None = None) -> Path:
    """The real scene re-labelled (product id, WRS path/row, date, cloud cover; ``LT05`` drops the
    OLI-only members and names the thermal band ST_B6) — small stand-ins for a grown collection.
    Pixels and geometry stay the real ones."""
    dest = Path(dest_folder)
    dest.mkdir(parents=True, exist_ok=True)
    new_id = f"{sensor}_L2SP_{path:03d}{row:03d}_{acquired}_20200825_02_T1"
    iso = f"{acquired[:4]}-{acquired[4:6]}-{acquired[6:]}"
    out = dest / f"{new_id}.tar"
    tm = sensor in ("LT04", "LT05", "LE07")
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        for suffix in MEMBER_SUFFIXES:
            if tm and suffix in ("SR_B6.TIF", "SR_QA_AEROSOL.TIF"):
                continue
            src = REAL_DIR / PRODUCT_ID / f"{PRODUCT_ID}_{suffix}"
            new_suffix = suffix.replace("ST_B10", "ST_B6") if tm else suffix
            data = src.read_bytes()
            if suffix.endswith((".txt", ".xml", ".json")):
                text = data.decode()
                text = text.replace(PRODUCT_ID, new_id).replace("2019-12-01", iso)
                text = text.replace("WRS_PATH = 8\n", f"WRS_PATH = {path}\n").replace("WRS_ROW = 59\n", f"WRS_ROW = {row}\n")
                if cloud is not None:
                    text = text.replace("CLOUD_COVER = 81.02", f"CLOUD_COVER = {cloud}")
                if tm:
                    spacecraft = {"LT04": "LANDSAT_4", "LT05": "LANDSAT_5", "LE07": "LANDSAT_7"}[sensor]
                    text = text.replace("ST_B10", "ST_B6").replace('"LANDSAT_8"', f'"{spacecraft}"')
                    text = text.replace('"OLI_TIRS"', '"TM"' if sensor != "LE07" else '"ETM"')
                    text = text.replace("LC80080592019335LGN00", f"L{sensor[1]}{sensor[3]}0080592019335LGN00")
                data = text.encode()
            info = tarfile.TarInfo(f"{new_id}_{new_suffix}")
            info.size = len(data)
            info.mtime = int(src.stat().st_mtime)

            tar.addfile(info, io.BytesIO(data))
    return out
