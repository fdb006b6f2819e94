"""Synthetic archive sets for the chain benchmark (generated once, reused by every run).

A set is Landsat 8 C2 L2 tars (6 optical bands, ST, QA_PIXEL, QA_RADSAT, aerosol QA; DEFLATE
members, ~30 % cloud) of one or more WRS paths, with a given member tiling and with or without
internal overviews. `select(name, dates)` gives a folder of symlinks to the first `dates` dates.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = Path(os.environ.get("IMALYS_BENCH_WORK", HERE / "work"))


@dataclass(frozen=True)
class ArchiveSet:
    size: int  # pixels a side
    tile: int  # internal tile of the members
    overviews: bool
    dates: int
    paths: tuple[int, ...] = (193,)  # WRS paths (row 26): 193 is UTM 32N, 192 is UTM 33N

    @property
    def name(self) -> str:
        paths = "-".join(str(p) for p in self.paths)
        return f"set-{self.size}-t{self.tile}{'o' if self.overviews else 'n'}-p{paths}-{self.dates}"

    @property
    def folder(self) -> Path:
        return WORK / self.name

    def acquired(self, i: int) -> date:
        return date(2022, 4, 1) + timedelta(days=8 * i)

    def prepare(self, log=print, dates: int | None = None) -> Path:
        """Generate the archives that are missing (`dates`: only the first that many dates)."""
        from imalys_stac.synth import Landscape, SceneSpec, write_landsat_archive

        self.folder.mkdir(parents=True, exist_ok=True)
        landscape = Landscape(seed=1)
        for i in range(min(self.dates, dates or self.dates)):
            for path in self.paths:
                acquired = self.acquired(i)
                if list(self.folder.glob(f"*_{path:03d}026_{acquired:%Y%m%d}_*.tar")):
                    continue
                t = time.perf_counter()
                write_landsat_archive(self.folder, SceneSpec(sensor="LC08", path=path, row=26, acquired=acquired,
                                                             size=self.size, cloud_cover=0.3, seed=1 + i),
                                      landscape=landscape, truth=False, blocksize=self.tile, overviews=self.overviews)
                log(f"prepared {self.name}: path {path} {acquired} in {time.perf_counter() - t:.1f} s")
        return self.folder

    def select(self, dates: int) -> Path:
        """A folder of symlinks to the archives of the first `dates` dates."""
        if dates > self.dates:
            raise ValueError(f"{self.name} has {self.dates} dates, {dates} asked")
        wanted = {f"{self.acquired(i):%Y%m%d}" for i in range(dates)}
        out = WORK / f"sel-{self.name}-{dates}"
        out.mkdir(parents=True, exist_ok=True)
        for tar in sorted(self.folder.glob("*.tar")):
            if tar.name.split("_")[3] in wanted and not (out / tar.name).exists():
                (out / tar.name).symlink_to(tar)
        return out
