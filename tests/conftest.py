"""Shared fixtures: writing chain files, a small synthetic Landsat archive folder, the real scene.

Fixtures defined in a test module with the same name win over these (pytest's rule), so the
older modules' own fixtures are untouched.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Callable

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture
def write_chain(tmp_path) -> Callable[..., Path]:
    """``write_chain(text, name="chain.txt")`` → the path of a chain file holding ``text``.

    ``text`` is written as given (``str`` as UTF-8 without changing line ends, ``bytes`` as is),
    so tests control BOMs, CRLF and encodings; it goes to the test's ``tmp_path``.
    """

    def write(text: str | bytes, name: str = "chain.txt") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, str):
            try:  # lone surrogates: as the bytes they stand for (a Latin-1 é), else as invalid UTF-8
                text = text.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                text = text.encode("utf-8", "surrogatepass")
        path.write_bytes(text)
        return path

    return write


@dataclass(frozen=True)
class SyntheticArchives:
    """What :func:`synthetic_archives` wrote: the folder, its archives and the scenes' truth."""

    folder: Path
    archives: tuple[Path, ...]
    scenes: tuple  # imalys_stac.synth.SyntheticScene, one per archive, in date order


#: dates and cloud fractions of the synthetic folder (the third is cloudy enough that quality = 0.7 rejects it)
SYNTHETIC_DATES = ((date(2022, 5, 15), 0.05), (date(2022, 5, 31), 0.2), (date(2022, 7, 2), 0.6))


@pytest.fixture(scope="session")
def synthetic_archives(tmp_path_factory) -> SyntheticArchives:
    """Three small (64 × 64 px) synthetic Landsat 8 C2 L2 archives of WRS 193/026 in one folder,
    drawn from one landscape by :mod:`imalys_stac.synth`. Read-only: copy before changing it."""
    from imalys_stac.synth import Landscape, SceneSpec, write_landsat_archive

    folder = tmp_path_factory.mktemp("synthetic-archives")
    land = Landscape(seed=5)
    scenes = tuple(
        write_landsat_archive(folder, SceneSpec(sensor="LC08", path=193, row=26, acquired=day, size=64,
                                                cloud_cover=cloud, seed=20 + i), landscape=land)
        for i, (day, cloud) in enumerate(SYNTHETIC_DATES)
    )
    archives = tuple(sorted(folder.glob("*.tar")))
    assert len(archives) == len(SYNTHETIC_DATES)
    return SyntheticArchives(folder, archives, scenes)


@pytest.fixture(scope="session")
def real_scene() -> Path:
    """The folder of the real USGS Landsat 8 C2 L2 file set in ``tests/data/real`` (see its README
    for the licence); :func:`tests.realdata.tar_real_scene` tars it as USGS ships it."""
    from .realdata import PRODUCT_ID, REAL_DIR

    folder = REAL_DIR / PRODUCT_ID
    if not folder.is_dir():
        pytest.skip("the real scene is not in tests/data/real")
    return folder
