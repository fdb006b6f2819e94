"""The chain where users are, side by side with the notebook they would write instead.

    python -m benchmarks.bench_chain prepare          # generate the archive sets (once)
    python -m benchmarks.bench_chain run [--cases a,b] # chain, notebook and read floor per case
    python -m benchmarks.bench_chain report           # → benchmarks/RESULTS.md (chain section)
    python -m benchmarks.bench_chain all              # the three in a row
    python -m benchmarks.bench_chain quick --work DIR # tiny smoke run (the test suite runs it)

Per case, in this order and in the same run, each in its own process (wall time and peak RSS of
the whole process tree sampled from outside, machine load recorded):
- chain: `imalys-stac run` on import (frame) → compile → reduce median → export COG;
- notebook: stackstac → `where` on the QA flags → calibrate → `.median("time")` → `rio.to_raster`
  + `cog_translate` (COG), on the chain's grid;
- floor: every tile of every member the case needs (6 bands + QA_PIXEL), decoded once, two threads.
`all` takes about 25–35 min on a quiet 2-core machine with the archive sets present (the
notebook, run for every case as the issue asks, is about half of it; the full footprint's
notebook alone ~5 min); generating the sets the first time (`prepare`, kept in
benchmarks/work/, which `make clean` removes) takes about an hour more.
The chain reduces with `median` (bestof costs the same, see the kernels section) so that its
pixels can be compared one for one with the notebook's: the run fails unless they are identical
inside the frame (for the warped case: identical where no warped date contributes, and the
warped pixels are reported).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.datasets import WORK, ArchiveSet
from benchmarks.results_md import save_results, write_section

HERE = Path(__file__).resolve().parent
RESULTS_JSON = HERE / "results" / "chain.json"
BANDS = ["blue", "green", "red", "nir08", "swir16", "swir22"]
SUFFIXES = ["_B2", "_B3", "_B4", "_B5", "_B6", "_B7"]
#: frame margins in pixels (left, top, right, bottom): starts inside a tile for 256 and 512
FRAME_MARGINS = (333, 171, 205, 290)


@dataclass
class Case:
    name: str
    aset: ArchiveSet
    dates: int
    frame: bool = True
    crsystem: int | None = None  # compile onto this EPSG (the warped case)
    note: str = ""
    extra: dict = field(default_factory=dict)


def cases(quick: bool = False) -> list[Case]:
    if quick:
        s = ArchiveSet(600, 256, False, 2)
        u = ArchiveSet(1200, 256, False, 1, (192, 193))  # 36 km scenes, 18 km apart: they overlap
        return [Case("frame", s, 2), Case("utm", u, 1, frame=False, crsystem=32632)]
    a512 = ArchiveSet(4096, 512, False, 16)
    return [  # in the order they run: the issue's own case first
        Case("frame 512 8d", a512, 8, note="frame at an arbitrary offset; USGS-like members (512 px tiles, no overviews)"),
        Case("whole 512 8d", a512, 8, frame=False, note="whole scene"),
        Case("frame 512 4d", a512, 4),
        Case("frame 512 16d", a512, 16),
        Case("two UTM zones 4d", ArchiveSet(2048, 512, False, 4, (192, 193)), 4, frame=False, crsystem=32632,
             note="paths 192 (UTM 33) and 193 (UTM 32) compiled onto one EPSG:32632 grid: path 192 warped"),
        Case("full footprint 8d", ArchiveSet(7800, 512, False, 8), 8, frame=False, note="7,800 × 7,800 px whole scene"),
        Case("frame 256+ovr 8d", ArchiveSet(4096, 256, True, 8), 8, note="256 px tiles with overviews (the synthetic default)"),
        Case("frame 512+ovr 8d", ArchiveSet(4096, 512, True, 8), 8, note="members with internal overviews"),
        Case("frame 256 8d", ArchiveSet(4096, 256, False, 8), 8),
    ]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


# ------------------------------------------------------------------ the three variants


def frame_file(case: Case, folder: Path, out_dir: Path) -> Path | None:
    """A rectangle FRAME_MARGINS pixels inside the first scene, in its CRS, as a GeoPackage."""
    if not case.frame:
        return None
    import rasterio
    from shapely.geometry import box

    from imalys_stac.synth import write_frame

    tar = sorted(folder.glob("*.tar"))[0]
    member = f"/vsitar/{tar}/{tar.stem}_QA_PIXEL.TIF"
    with rasterio.open(member) as ds:
        t, w, h = ds.transform, ds.width, ds.height
        crs = ds.crs
    left, top, right, bottom = FRAME_MARGINS
    geom = box(t.c + left * t.a, t.f + (h - bottom) * t.e, t.c + (w - right) * t.a, t.f + top * t.e)
    return write_frame(out_dir / "frame.gpkg", geom, crs.to_wkt())


def chain_text(case: Case, folder: Path, out: Path, frame: Path | None) -> str:
    wd = out.parent / "wd"
    lines = ["IMALYS [benchmark]", "home", f"\tdirectory = {wd}", "\tclear = true", f"\tlog = {out.parent / 'logs'}",
             "import", f"\tselect = {folder}/*.tar", f"\tbands = {', '.join(SUFFIXES)}",
             "\tfactor = 2.75e-5", "\toffset = -0.2"]
    if frame:
        lines.append(f"\tframe = {frame}")
    lines += ["compile", "\tsearch = LC0*"]
    if case.crsystem:
        lines += [f"\tcrsystem = {case.crsystem}", "\tpixel = 30"]
    lines += ["reduce", "\tselect = compile", "\texecute = median", "\tpreserve = bands",
              "export", "\tselect = median", f"\ttarget = {out}"]
    return "\n".join(lines) + "\n"


def notebook(folder: Path, out: Path, grid_json: str) -> dict:
    """What a user writes in a notebook: stackstac on the chain's grid, where on the QA flags,
    calibrate, median, to_raster + cog_translate."""
    import threading

    import numpy as np
    import rioxarray  # noqa: F401
    import stackstac
    from rasterio.enums import Resampling
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    from imalys_stac.stac import item_from_archive

    g = json.loads(grid_json)
    t0 = time.perf_counter()
    items = [item_from_archive(p) for p in sorted(folder.glob("*.tar"))]
    common = dict(epsg=g["epsg"], resolution=g["res"], bounds=tuple(g["bounds"]), snap_bounds=False,
                  chunksize=1024, dtype="float32", fill_value=np.float32(np.nan), rescale=False, xy_coords="center")
    # bilinear where a scene must be warped (as the chain's compile), nearest for the QA flags
    stack = stackstac.stack(items, assets=BANDS, resampling=Resampling.bilinear if g.get("warp") else Resampling.nearest,
                            **common)
    qa = stackstac.stack(items, assets=["qa_pixel"], resampling=Resampling.nearest, **common).sel(band="qa_pixel")
    clear = (qa.fillna(1).astype("uint16") & 0b11111) == 0  # fill, dilated cloud, cirrus, cloud, shadow
    # calibrated in float64 and then stored as float32, as the archive's scale and offset say
    refl = (stack.astype("float64") * 2.75e-5 - 0.2).astype("float32").where(clear & (stack > 0))
    median = refl.median("time", skipna=True).rio.write_crs(f"EPSG:{g['epsg']}")
    tmp = out.with_suffix(".tmp.tif")
    median.rio.to_raster(tmp, tiled=True, lock=threading.Lock(), compress="deflate")
    t1 = time.perf_counter()
    cog_translate(str(tmp), str(out), cog_profiles.get("deflate"), quiet=True)
    tmp.unlink()
    return {"compute_s": round(t1 - t0, 2), "cog_s": round(time.perf_counter() - t1, 2)}


def read_floor(folder: Path, grid_json: str, threads: int = 2) -> dict:
    """Every tile of every member the grid needs (6 bands + QA_PIXEL), decoded once: per
    member one read of the tile-aligned window around the grid (warped scenes: the window
    around the grid's footprint in the scene's CRS)."""
    from concurrent.futures import ThreadPoolExecutor

    import rasterio
    from rasterio.warp import transform_bounds
    from rasterio.windows import Window

    g = json.loads(grid_json)
    members = [f"/vsitar/{tar}/{tar.stem}_{s}.TIF" for tar in sorted(folder.glob("*.tar"))
               for s in ["SR" + x for x in SUFFIXES] + ["QA_PIXEL"]]
    counted = {"tiles": 0, "pixels": 0}

    def one(href: str) -> tuple[int, int]:
        with rasterio.open(href) as ds:
            l, b, r, t = transform_bounds(f"EPSG:{g['epsg']}", ds.crs, *g["bounds"])
            inv = ~ds.transform
            c0, r0 = inv @ (l, t)
            c1, r1 = inv @ (r, b)
            bh, bw = ds.block_shapes[0]
            c0, r0 = max(0, int(c0) // bw * bw), max(0, int(r0) // bh * bh)
            c1, r1 = min(ds.width, -(-int(c1 + 1) // bw) * bw), min(ds.height, -(-int(r1 + 1) // bh) * bh)
            if c1 <= c0 or r1 <= r0:
                return 0, 0
            ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
            return -(-(r1 - r0) // bh) * -(-(c1 - c0) // bw), (r1 - r0) * (c1 - c0)

    t0 = time.perf_counter()
    with rasterio.Env(GDAL_CACHEMAX=64), ThreadPoolExecutor(threads) as pool:
        for tiles, px in pool.map(one, members):
            counted["tiles"] += tiles
            counted["pixels"] += px
    return {"floor_s": round(time.perf_counter() - t0, 2), "members": len(members), **counted}


# ------------------------------------------------------------------ running a case


def warm_archives(folder: Path) -> float:
    """Read every archive of the case once, so each variant starts with them in the OS page cache
    (as a user's second run would): the variant run first otherwise pays the disk reads alone (the
    7800² case's chain took 50 s cold vs 35 s warm here, its CPU seconds 75 vs 56). Returns seconds."""
    t0 = time.perf_counter()
    for path in sorted(Path(folder).glob("*.tar")):
        with open(path, "rb") as f:
            while f.read(8 << 20):
                pass
    return time.perf_counter() - t0


def _measured(cmd: list[str], env: dict | None = None) -> dict:
    import resource

    from benchmarks.memory import run_measured

    load0 = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = run_measured(cmd, env={**os.environ, "PYTHONPATH": str(HERE.parent), **(env or {})})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds (user + system) of the process and every thread: unlike wall time, barely
    # changed by other work sharing the machine, so runs under load still compare
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    detail = {}
    for line in r["output"].splitlines()[::-1]:
        if line.startswith("{"):
            try:
                detail = json.loads(line)
            except ValueError:
                continue
            break
    return {"seconds": round(r["seconds"], 2), "cpu_s": round(cpu, 2), "peak_rss_gib": round(r["peak_rss"] / 2**30, 3),
            "ok": r["returncode"] == 0, "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2),
            **detail, **({} if r["returncode"] == 0 else {"output": r["output"][-1500:]})}


def _grid_of(tif: Path, warp: bool) -> str:
    import rasterio

    with rasterio.open(tif) as ds:
        b = ds.bounds
        return json.dumps({"epsg": ds.crs.to_epsg(), "res": ds.res[0], "bounds": [b.left, b.bottom, b.right, b.top],
                           "shape": [ds.height, ds.width], "warp": warp})


def compare(chain_tif: Path, nb_tif: Path, warped_zone: dict | None) -> dict:
    """Pixels of chain and notebook: same grid, identical values (NaN where NaN). With a warped
    zone, identity is required where only unwarped scenes contribute; the rest is reported."""
    import numpy as np
    import rasterio

    with rasterio.open(chain_tif) as a, rasterio.open(nb_tif) as b:
        if (a.transform, a.shape, a.crs) != (b.transform, b.shape, b.crs):
            return {"identical": False, "why": f"grids differ: {a.transform} {a.shape} vs {b.transform} {b.shape}"}
        x, y = a.read(), b.read()
    same = (x == y) | (np.isnan(x) & np.isnan(y))
    out = {"pixels": int(same.size), "identical_share": round(float(same.mean()), 6),
           "valid_share": round(float(np.isfinite(x).mean()), 4)}
    if warped_zone is None:
        out["identical"] = bool(same.all())
    else:
        native = np.load(warped_zone["native_mask"])  # True where no warped scene has data
        out["identical"] = bool(same[:, native].all())
        d = np.abs(x - y)[:, ~native]
        d = d[np.isfinite(d)]
        out.update(native_share=round(float(native.mean()), 4), warped_identical_share=round(float(same[:, ~native].mean()), 6),
                   warped_max_abs_diff=float(d.max()) if d.size else 0.0)
    return out


def _native_mask(folder: Path, grid_json: str, epsg: int, out: Path) -> Path:
    """True on the grid where no scene of another CRS (warped) has a pixel."""
    import numpy as np
    import rasterio
    from rasterio.features import geometry_mask
    from rasterio.warp import transform_geom
    from shapely.geometry import box, mapping

    g = json.loads(grid_json)
    h, w = g["shape"]
    left, bottom, right, top = g["bounds"]
    from affine import Affine
    tr = Affine(g["res"], 0, left, 0, -g["res"], top)
    native = np.ones((h, w), bool)
    for tar in sorted(folder.glob("*.tar")):
        with rasterio.open(f"/vsitar/{tar}/{tar.stem}_QA_PIXEL.TIF") as ds:
            if ds.crs.to_epsg() == epsg:
                continue
            geom = transform_geom(ds.crs, f"EPSG:{epsg}", mapping(box(*ds.bounds)))
        native &= geometry_mask([geom], out_shape=(h, w), transform=tr, all_touched=True)
    # a warped scene's bilinear kernel reaches a pixel or two further
    for _ in range(2):
        n = native.copy()
        n[1:] &= native[:-1]
        n[:-1] &= native[1:]
        n[:, 1:] &= native[:, :-1]
        n[:, :-1] &= native[:, 1:]
        native = n
    np.save(out, native)
    return out


def run_case(case: Case, work: Path = WORK, variants=("chain", "notebook", "floor"), readers=("tiles",)) -> dict:
    folder = case.aset.select(case.dates)
    out_dir = work / f"out-{_slug(case.name)}"
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = frame_file(case, folder, out_dir)
    res: dict = {"case": case.name, "dates": case.dates, "size": case.aset.size, "tile": case.aset.tile,
                 "overviews": case.aset.overviews, "archives": len(list(folder.glob("*.tar"))), "note": case.note}
    chain_tif = out_dir / "chain.tif"
    for reader in (readers if "chain" in variants else ()):  # without: the case's earlier chain.tif is used
        key = "chain" if reader == "tiles" else f"chain ({reader})"
        tif = chain_tif if reader == "tiles" else out_dir / f"chain-{reader}.tif"
        chain = out_dir / f"{tif.stem}.chain.txt"
        chain.write_text(chain_text(case, folder, tif, frame))
        stats = out_dir / f"{tif.stem}.readstats.jsonl"
        stats.unlink(missing_ok=True)
        warm_archives(folder)
        r = _measured([sys.executable, "-m", "imalys_stac.cli", "run", str(chain)],
                      env={"IMALYS_READ_STATS": str(stats), "IMALYS_READER": reader})
        if stats.exists():
            rows = [json.loads(line) for line in stats.read_text().splitlines() if line.strip()]
            r["tiles_decoded"] = sum(x["decoded"] for x in rows)
            r["tiles_needed"] = sum(x["needed"] for x in rows)
            r["tiles_reused"] = sum(x.get("reused", 0) for x in rows)  # the import's QA tiles, kept for the reduce
        r["steps"] = _steps(out_dir / "logs")
        res[key] = r
        print(case.name, key, r, flush=True)
        if not r["ok"]:
            return res
    grid = _grid_of(chain_tif, warp=bool(case.crsystem))
    g = json.loads(grid)
    res["grid"] = {"shape": g["shape"], "epsg": g["epsg"]}
    res["band_pixels"] = 6 * case.dates * g["shape"][0] * g["shape"][1] * (len(case.aset.paths))
    if "notebook" in variants:
        nb = out_dir / "notebook.tif"
        warm_archives(folder)
        res["notebook"] = _measured([sys.executable, "-m", "benchmarks.bench_chain", "_notebook", str(folder), str(nb), grid])
        print(case.name, "notebook", res["notebook"], flush=True)
        if res["notebook"]["ok"]:
            zone = None
            if case.crsystem:
                zone = {"native_mask": str(_native_mask(folder, grid, case.crsystem, out_dir / "native.npy"))}
            res["pixels"] = compare(chain_tif, nb, zone)
            print(case.name, "pixels", res["pixels"], flush=True)
    if "floor" in variants:
        warm_archives(folder)
        res["floor"] = _measured([sys.executable, "-m", "benchmarks.bench_chain", "_floor", str(folder), grid])
        print(case.name, "floor", res["floor"], flush=True)
    return res


def _steps(logs: Path) -> dict:
    """Seconds per command from the newest run log ("<command> done in X s")."""
    import re

    files = sorted(logs.glob("*.log"), key=lambda p: p.stat().st_mtime)
    if not files:
        return {}
    out = {}
    for m in re.finditer(r"(\w+) done in ([\d.]+) s", files[-1].read_text(errors="replace")):
        out[m.group(1)] = float(m.group(2))
    return out


def run(names: list[str] | None, readers=("tiles",), variants=("chain", "notebook", "floor")) -> dict:
    results = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    runs = results.setdefault("runs", {})
    for case in cases():
        if names and case.name not in names:
            continue
        case.aset.prepare()
        # merged into an earlier result of the case: a run of some variants keeps the others
        runs[case.name] = {**runs.get(case.name, {}), **run_case(case, readers=readers, variants=variants)}
        results["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        save_results(RESULTS_JSON, results)
    return results


# ------------------------------------------------------------------ report


def _rate(r: dict, seconds: float) -> str:
    return f"{r['band_pixels'] / seconds / (os.cpu_count() or 1) / 1e6:.1f}"


NOTES = """\
How to read this table
- This run: every case's notebook and floor 16:17–16:45 UTC, the chains rerun 16:45–16:48 after the
  archives were read into the page cache (the first pass ran each chain first, cold: frame 8 d 15.8 s,
  full footprint 50.2 s). Identical runs vary by ±15 % in wall and CPU seconds on this machine (the
  7800² chain took 35 s alone at 15:44 and 45–48 s at 16:50, its system time doubling while the
  benchmark's gigabytes of output were written back to disk).
- Every variant starts with the case's archives in the OS page cache (read once just before it, as a
  user's second run would find them), so the variant run first does not pay the disk alone.
- chain: `imalys-stac run` on import (frame) → compile → reduce **median** → export COG; its members
  are read by `cube.tiles` (chunk edges on the members' tile edges, each tile decoded once — the
  tiles decoded / needed column counts it, import's QA pass included). `chain (stackstac)` is the
  same chain with the former reader (`IMALYS_READER=stackstac`), chunks from the frame's corner.
- notebook: stackstac (chunks 1024) → `where` on QA_PIXEL bits 0–4 → calibrate (float64, as the
  chain does, then float32) → `.median("time")` → `rio.to_raster` + `cog_translate`, on the chain's grid.
  Its pixels are asserted identical to the chain's (NaN where NaN) inside the frame.
- floor: every tile of the 6 bands + QA_PIXEL inside the grid decoded once, 2 threads, nothing else.
  A floor for a whole chain also pays Python start-up (≈ 2–3 s here), the import's QA pass, the
  fused mask/calibrate kernel, the median, the COG (temporary file, overviews, ZSTD) and its checks.

First round (earlier on 2026-12-01): the bands of a warped scene in one GDAL call per chunk, without
nodata masks where the window has none; the COG self-check with footprint weights as short runs and
one handle per level (14 % → 4 % of a chain); no dask block concatenation in the reducer; crop reads
copied straight into the chunk's block: CPU seconds of a chain −24 % (two zones), −15 % (frame).

Where the time went, and what changed in the second round (2026-12-01 15:00–16:10 UTC; each change
kept the pixels of every case identical to the first round's COGs, compared array by array):
- Start-up: a run on the in-process scheduler no longer imports `distributed` (dask imported it to
  resolve the scheduler's name; the dask plugins moved to `runtime/plugins.py`) or stackstac (only
  its optional reader); ~1 s of the ≈ 3–4 s before the first command.
- export copies a COG that reduce checked and that is unchanged since (size and mtime in
  `imalys:cog_checked`) without checking it again: 1.4 s → 0.0–0.4 s.
- The fused mask/calibrate/merge kernel: 116 → 14.5 ms per 8 × 6 × 512² block (14 % of the chain's
  busy samples before). Three causes, each measured: the output was allocated inside numba (no huge
  pages: first-touch page faults of a fresh 50 MB block cost 45 ms here, numpy's allocation 6 ms);
  the loops indexed 4-D arrays per pixel and the value was computed inside the branch, which kept
  LLVM from vectorizing (55 → 7 ms with row views and compute-then-select); and the kernel copied
  the DN part of the reader's block (a strided view) — it now gets the block whole.
- The import's quality count: one branch-free compiled pass per block (1.8–2.4× numpy's
  `table[codes].any(0)`), and dask no longer runs it on empty arrays to infer its meta.
- The COG: the uncompressed intermediate is band-interleaved (GDAL's overviews 1.9 → 1.0 s, its COG
  copy 1.9 → 1.7 s for 6 × 3558 × 3635); the ×2 overview is computed strip by strip while the blocks
  are written (`write/overviews.py`: GDAL's average rule, exact, any block order; checked against a
  per-pixel loop and against GDAL's own overviews) into GDAL's external `.ovr`, from which GDAL builds
  the smaller levels; the overview check computes the pooled full-resolution mean only where the mean
  of means does not match (2.3 → 0.8 s on 7800²). The reduce's tail after the last block (overviews,
  ZSTD copy, checks, quicklook): 5.8 → 2.8 s for the 8-date frame, 13.4 → 10.7 s for 7800².
- Memory: GDAL's block cache is 64 MB in-process (it was 256–512 MB depending on import order, and
  only ever held copies of tiles the tile reader had decoded, or written blocks of the uncompressed
  intermediate): peak RSS 1.94 → 1.26 GB (frame, 8 dates), 2.29 → 1.64 GB (16 dates), 2.46 → 1.45 GB
  (7800²), same speed.
- Tried and not kept: two rows of chunks computed at once (no thread waits for a row's slowest
  chunk) and one synchronous graph per chunk on a thread pool — neither was faster beyond the noise
  of this machine (CPU seconds of identical runs vary by ±15 %), and the first held 0.4 GB more;
  chunks of whole tile rows for 16 dates (the tile cache still peaked at a full row of tiles).

What still limits the chain:
- Decoding the DEFLATE members is the floor and now the largest part: ≈ 33 % of a frame chain's busy
  samples (the `floor` column decodes only those tiles, in two threads, with nothing else running).
- The COG's ZSTD copy (level 1, floating-point predictor, all CPUs): GDAL's COG driver compresses
  full resolution only after the overviews exist, so it cannot overlap with computing (7 s of a 7800²
  chain's 10.7 s tail; without the predictor it would be 1.7× faster for a 7.7 % larger file — the
  predictor stays). GDAL has no raw copy of ZSTD tiles (only of JPEG ones), so writing the final
  tiles while computing would need a TIFF writer of our own.
- Python start-up and imports (≈ 2 s: rasterio, xarray/pandas, numba, dask) and the import's QA pass
  (2–5 s: the QA tiles are decoded once more there, 1/7 of all tiles, plus the count).
- Warping (two UTM zones): GDAL's warp. The 6 bands of a scene go through one
  `rasterio.warp.reproject` call per chunk (`cube.tiles.warp_together`); where the chunk's source
  window holds no nodata and lies inside the scene, without nodata masks (GDAL's plain bilinear
  kernel costs a third of its masked one and gives the same pixels, bit for bit: `tests/test_tiles.py`);
  windows with the scene's fill are warped masked — most of the remaining warp time.

Other notes:
- Warped pixels are not identical to stackstac's: both use GDAL's bilinear warp, but over different
  windows (a chunk of tiles here, a 1024-px chunk through a WarpedVRT there), and GDAL's approximate
  coordinate transformer (≤ 0.125 px) then differs slightly: in the two-zone case about half of the
  warped pixels differ, by up to 0.04 reflectance at cloud and scene edges. Where no warped scene
  contributes the pixels are identical (asserted).
- Memory grows with the dates a little (4 → 8 → 16 dates: see the RSS column): at 16 dates a 512-px
  tile no longer fits the block budget, chunks become half tiles and the tile cache holds one row of
  tiles for the next row of chunks (392–448 MiB at 16 dates).
- The import's QA pass decodes the QA tiles once more: 512 of the 4,096 tiles of `frame 512 8d`
  (12.5 % of the decoding, ≈ 5 % of the chain's CPU with decoding at 39 %). One pass could serve
  both only where compile keeps the import's grid (a warped compile needs the QA on its own grid)
  and would store 8 × 3558 × 3635 × 2 B = 207 MB of QA per 8 dates between the commands; the lazy
  design (import decides which scenes to keep before anything else is read) stays.
- Open: GDAL's masked warp kernel at scene edges (above); the COG's ZSTD copy after the overviews.
"""


def report() -> str:
    results = json.loads(RESULTS_JSON.read_text())
    runs = results["runs"]
    lines = ["## The chain where users are: frames at any offset, tilings, dates, warping (issue 9)", "",
             f"Run {results.get('when', '?')} on {results.get('machine', {}).get('cpus', '?')} CPUs. Each variant in its own "
             "process; wall s, CPU s (user + system of the process tree: little changed by other work on the machine), "
             "peak RSS of the process tree (GiB), load = 1-min load average before the variant started "
             "(2 CPUs: above ~2.5 other work shared the machine). Band-px/s/core = output band-pixels × dates ÷ wall ÷ cores.", "",
             "| case | grid | chain s | notebook s | speed-up | floor s | chain ÷ floor | CPU s chain / notebook / floor | chain Mpx/s/core | RSS chain / notebook | tiles decoded / needed | pixels | load |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|---|---|---|---|"]
    for c in cases():
        r = runs.get(c.name)
        if not r or "chain" not in r:
            continue
        ch, nb, fl = r["chain"], r.get("notebook", {}), r.get("floor", {})
        grid = "×".join(str(v) for v in r.get("grid", {}).get("shape", [])[::-1])
        sp = f"{nb['seconds'] / ch['seconds']:.1f}×" if nb.get("ok") and ch.get("ok") else ""
        fr = f"{ch['seconds'] / fl['seconds']:.1f}" if fl.get("ok") else ""
        px = r.get("pixels", {})
        pix = ("identical" if px.get("identical") else f"DIFFER ({px.get('identical_share')})") if px else ""
        if px and "warped_identical_share" in px:
            pix += f"; warped part {px['warped_identical_share'] * 100:.2f} % identical, max diff {px['warped_max_abs_diff']:.2g}"
        tiles = f"{ch.get('tiles_decoded', '?')} / {ch.get('tiles_needed', '?')}"
        load = "/".join(f"{v.get('load_before', 0):.1f}" for v in (ch, nb, fl) if v)
        nbs = f"{nb['seconds']:.1f}" if nb.get("ok") else "not run"
        nbr = f"{nb['peak_rss_gib']:.2f}" if nb.get("ok") else "—"
        cpu = " / ".join(f"{v['cpu_s']:.1f}" if v.get("ok") and "cpu_s" in v else "—" for v in (ch, nb, fl))
        lines.append(f"| {c.name} | {grid} | {ch['seconds']:.1f} | {nbs} | {sp} | "
                     f"{fl.get('floor_s', float('nan')):.1f} | {fr} | {cpu} | {_rate(r, ch['seconds']) if 'band_pixels' in r else ''} | "
                     f"{ch['peak_rss_gib']:.2f} / {nbr} | {tiles} | {pix} | {load} |")
        for k, v in r.items():
            if k.startswith("chain (") and isinstance(v, dict):
                lines.append(f"| ↳ {c.name}, {k} | | {v['seconds']:.1f} | | | | | {v.get('cpu_s', '—')} | | {v['peak_rss_gib']:.2f} | "
                             f"{v.get('tiles_decoded', '—')} / {v.get('tiles_needed', '—')} | | {v.get('load_before', 0):.1f} |")
    lines += ["", "Steps of the chain (s, from its run log):", ""]
    for c in cases():
        r = runs.get(c.name)
        if r and r.get("chain", {}).get("steps"):
            lines.append(f"- {c.name}: " + ", ".join(f"{k} {v:.1f}" for k, v in r["chain"]["steps"].items()))
    loads = [v.get("load_before", 0) for r in runs.values() for v in r.values() if isinstance(v, dict) and "load_before" in v]
    if loads and max(loads) > 2.5:
        lines += ["", f"**Machine load: the 1-minute load average was {min(loads):.1f}–{max(loads):.1f} during this run "
                  "(2 CPUs shared with other engineers' test suites and benchmarks), so every wall time above is "
                  "inflated, by several times for the long runs; ratios between variants run one after the other are "
                  "less affected, but not immune (the load changed between them).**"]
    lines += ["", NOTES]
    section = "\n".join(lines) + "\n"
    write_section("chain", section)
    return section


# ------------------------------------------------------------------ quick (smoke test)


def quick(work: Path) -> dict:
    """Tiny archives, every case kind, every variant: checks that the benchmark runs end to end
    and that chain and notebook agree (no timing is judged)."""
    out = {}
    import benchmarks.datasets as ds

    ds.WORK = work
    for case in cases(quick=True):
        case.aset.prepare(log=lambda m: None)
        out[case.name] = run_case(case, work=work)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_chain", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["prepare", "run", "report", "all", "quick", "_notebook", "_floor"])
    ap.add_argument("args", nargs="*")
    ap.add_argument("--cases", type=str, default="", help="comma list of case names (default: all)")
    ap.add_argument("--readers", type=str, default="tiles", help="comma list: tiles (the chain's reader), stackstac (before)")
    ap.add_argument("--work", type=str, default=None)
    ap.add_argument("--variants", type=str, default="chain,notebook,floor", help="comma list: chain, notebook, floor")
    a = ap.parse_args()
    if a.step == "_notebook":
        print(json.dumps(notebook(Path(a.args[0]), Path(a.args[1]), a.args[2])))
        return
    if a.step == "_floor":
        print(json.dumps(read_floor(Path(a.args[0]), a.args[1])))
        return
    if a.step == "quick":
        print(json.dumps(quick(Path(a.work or WORK / "quick")), indent=1, default=str))
        return
    names = [n.strip() for n in a.cases.split(",") if n.strip()] or None
    if a.step in ("prepare", "all"):
        for c in cases():
            if not names or c.name in names:
                c.aset.prepare()
    if a.step in ("run", "all"):
        run(names, readers=tuple(a.readers.split(",")), variants=tuple(a.variants.split(",")))
    if a.step in ("report", "all"):
        print(report())


if __name__ == "__main__":
    main()
