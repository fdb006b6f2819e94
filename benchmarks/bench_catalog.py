"""Cataloguing a large archive collection: first build, unchanged re-run, incremental update, search.

    python -m benchmarks.bench_catalog prepare --count 10000   # metadata-only archives (a pool)
    python -m benchmarks.bench_catalog run --count 10000       # the four measurements
    python -m benchmarks.bench_catalog report                  # → benchmarks/RESULTS.md (catalog section)
    python -m benchmarks.bench_catalog all --count 1000,10000  # the three in a row

The issue asks for ~50,000 archives (the Imalys team's Germany tiles). Drawing 50,000 scenes is
pointless for a catalog, which reads only headers, so `prepare` draws one small real archive per
WRS tile with `imalys_stac.synth` (30 paths × 10 rows, 32 px, one date) and derives every other
archive from its tile's one by rewriting the tar: new product id in every member name and in the
MTL/ANG/JSON/XML texts, acquisition and processing dates, scene id, ephemeris day and cloud cover
changed consistently, rasters copied as they are (their georeferencing is the tile's). Dates
follow the Landsat 8 16-day cycle from 2013-04-11 (adjacent paths 7 days apart). The pool is
ordered by cycle, then tile, so the first N archives are a complete grid over a growing period and
the next ones are the "new acquisitions" of the incremental step.

`run` links the first N pool archives into `work/catalog/set-N/` (hard links: no extra disk) and
measures, each in its own process (wall time and peak RSS of the whole process tree, workers
included, sampled from outside):

  (a) first  — catalog of N archives into an empty target;
  (b) rerun  — the same again, nothing changed;
  (c) update — 1 % of the archives deleted, 1 % new ones added, catalog again;
  (d) search — `search(catalog, Query(bbox=~3×3 tiles, periods=[one year]))` over the index.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import shutil
import sys
import tarfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from benchmarks.results_md import save_results, write_section

HERE = Path(__file__).resolve().parent
WORK = Path(os.environ.get("IMALYS_BENCH_WORK", HERE / "work")) / "catalog"
RESULTS_JSON = HERE / "results" / "catalog.json"
SIZE = 32  # pixels of the base scenes (the rasters are only opened for their headers)
PATHS = range(180, 210)  # 30 paths
ROWS = range(20, 30)  # 10 rows
TILES = [(p, r) for p in PATHS for r in ROWS]
BASE_DATE = date(2022, 5, 15)
START = date(2013, 4, 11)  # first Landsat 8 Collection 2 acquisitions
CYCLE = 16
SEARCH_PERIOD = (date(2013, 1, 1), date(2013, 12, 31))
SEARCH_TILES = (194, 24)  # frame: this tile's centre ± one tile (≈ 3 × 3 tiles)


# ---------------------------------------------------------------------------------------- prepare
def _pool_spec(i: int) -> tuple[int, int, date]:
    """Path, row and acquisition date of the i-th pool archive (ordered by cycle, then tile)."""
    k, t = divmod(i, len(TILES))
    path, row = TILES[t]
    return path, row, START + timedelta(days=CYCLE * k + (path * 7) % CYCLE)


def _product_id(path: int, row: int, acquired: date, processed: date) -> str:
    return f"LC08_L2SP_{path:03d}{row:03d}_{acquired:%Y%m%d}_{processed:%Y%m%d}_02_T1"


def _base(path: int, row: int) -> Path:
    """The one synthetic archive of a tile (drawn once)."""
    from imalys_stac.synth import SceneSpec, write_landsat_archive

    folder = WORK / "bases"
    found = list(folder.glob(f"LC08_L2SP_{path:03d}{row:03d}_*.tar"))
    if found:
        return found[0]
    scene = write_landsat_archive(folder, SceneSpec(sensor="LC08", path=path, row=row, acquired=BASE_DATE,
                                                    size=SIZE, cloud_cover=0.3, seed=path * 1000 + row),
                                  truth=False)
    return scene.path


class _Template:
    """A base archive in memory: members, texts, and what to replace in them."""

    def __init__(self, tar_path: Path) -> None:
        with tarfile.open(tar_path) as tar:
            self.members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]
        mtl = next(n for m, n in ((m, m.name) for m, _ in self.members) if n.endswith("_MTL.txt"))
        self.pid = mtl[: -len("_MTL.txt")]
        p = self.pid.split("_")
        self.path, self.row = int(p[2][:3]), int(p[2][3:])
        self.acquired = datetime.strptime(p[3], "%Y%m%d").date()
        self.processed = datetime.strptime(p[4], "%Y%m%d").date()

    def variant(self, acquired: date, cloud: float, out_folder: Path) -> Path:
        """Write the archive of the same tile acquired on ``acquired`` (streamed, atomic)."""
        processed = acquired + timedelta(days=3 + (acquired.toordinal() % 5))
        pid = _product_id(self.path, self.row, acquired, processed)
        a0, p0 = self.acquired, self.processed
        doy0, doy = a0.timetuple().tm_yday, acquired.timetuple().tm_yday
        tile = f"{self.path:03d}{self.row:03d}"
        swaps = [
            (f"_{a0:%Y%m%d}_{p0:%Y%m%d}_", f"_{acquired:%Y%m%d}_{processed:%Y%m%d}_"),  # L2SP and L1TP ids
            (f"{a0:%Y-%m-%d}", f"{acquired:%Y-%m-%d}"),  # DATE_ACQUIRED
            (f"{p0:%Y-%m-%d}T", f"{processed:%Y-%m-%d}T"),  # DATE_PRODUCT_GENERATED
            (f"{tile}{a0.year}{doy0:03d}LGN", f"{tile}{acquired.year}{doy:03d}LGN"),  # LANDSAT_SCENE_ID
        ]
        cc, ccl = f"{cloud:.2f}", f"{cloud * 0.97:.2f}"
        subs = [
            (re.compile(r"(CLOUD_COVER\W+)[0-9.]+"), rf"\g<1>{cc}"),
            (re.compile(r"(CLOUD_COVER_LAND\W+)[0-9.]+"), rf"\g<1>{ccl}"),
            (re.compile(r"(EPHEMERIS_EPOCH_YEAR = )\d+"), rf"\g<1>{acquired.year}"),
            (re.compile(r"(EPHEMERIS_EPOCH_DAY = )\d+"), rf"\g<1>{doy}"),
        ]
        mtime = datetime.combine(processed, datetime.min.time(), tzinfo=timezone.utc).timestamp()
        target = out_folder / f"{pid}.tar"
        part = out_folder / f".{pid}.tar.part"
        with tarfile.open(part, "w", format=tarfile.USTAR_FORMAT) as tar:
            for info, data in self.members:
                ti = tarfile.TarInfo(info.name.replace(self.pid, pid))
                ti.mode, ti.uid, ti.gid, ti.mtime = info.mode, 0, 0, int(mtime)
                if not info.name.upper().endswith(".TIF"):
                    text = data.decode("utf-8")
                    for old, new in swaps:
                        text = text.replace(old, new)
                    for rx, rep in subs:
                        text = rx.sub(rep, text)
                    data = text.encode("utf-8")
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
        os.utime(part, (mtime, mtime))
        os.replace(part, target)
        return target


def pool_name(i: int) -> str:
    path, row, acquired = _pool_spec(i)
    processed = acquired + timedelta(days=3 + (acquired.toordinal() % 5))
    return f"{_product_id(path, row, acquired, processed)}.tar"


def _extra(n: int) -> int:
    return max(1, math.ceil(n / 100))


def prepare(count: int) -> None:
    """Pool archives 0 .. count + 1 % (the 1 % are the new archives of the incremental step)."""
    pool = WORK / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    total = count + _extra(count)
    t0 = time.perf_counter()
    templates: dict[tuple[int, int], _Template] = {}
    made = 0
    for i in range(total):
        if (pool / pool_name(i)).is_file():
            continue
        path, row, acquired = _pool_spec(i)
        if (path, row) not in templates:
            templates[(path, row)] = _Template(_base(path, row))
        cloud = (i * 37 % 1000) / 10.0  # 0.0 … 99.9 %, spread over tiles and dates
        templates[(path, row)].variant(acquired, cloud, pool)
        made += 1
        if made % 5000 == 0:
            print(f"  {made} archives written ({time.perf_counter() - t0:.0f} s)", flush=True)
    du = sum(f.stat().st_size for f in pool.glob("*.tar"))
    print(f"prepared {made} new archives ({total} needed) in {time.perf_counter() - t0:.1f} s; "
          f"pool: {du / 2**30:.2f} GiB", flush=True)


# ---------------------------------------------------------------------------------------- children
def _child_build(pattern: str, target: str) -> dict:
    """Catalog in this process, timing the phases of build_catalog (by wrapping its module functions)."""
    import logging
    import resource

    import imalys_stac.stac.catalog as C

    phases: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - t
        return wrapper

    C.expand_archives = timed("glob_s", C.expand_archives)
    C._load_state = timed("state_s", C._load_state)
    C._read_all = timed("read_s", C._read_all)
    C._write_catalog = timed("write_s", C._write_catalog)
    logging.basicConfig(level=logging.ERROR)
    t0 = time.perf_counter()
    rep = C.build_catalog(pattern, target, progress=False)
    total = time.perf_counter() - t0
    ru_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    ru_kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    cpu_self = resource.getrusage(resource.RUSAGE_SELF)
    cpu_kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"build_s": total, **phases, "added": len(rep.added), "updated": len(rep.updated),
            "removed": len(rep.removed), "skipped": len(rep.skipped), "unchanged": rep.unchanged,
            "main_maxrss_mib": ru_self / 2**20, "worker_maxrss_mib": ru_kids / 2**20,
            "main_cpu_s": cpu_self.ru_utime + cpu_self.ru_stime,
            "worker_cpu_s": cpu_kids.ru_utime + cpu_kids.ru_stime,
            "first_skip": rep.skipped[0] if rep.skipped else None}


def _search_frame() -> tuple[float, float, float, float]:
    from imalys_stac.synth import wrs_centre

    (x0, y0), (x1, y1) = wrs_centre(*SEARCH_TILES, SIZE), wrs_centre(SEARCH_TILES[0] - 1, SEARCH_TILES[1] + 1, SIZE)
    dx, dy = abs(x1 - x0), abs(y1 - y0)
    return (x0 - dx, y0 - dy, x0 + dx, y0 + dy)


def _child_search(target: str) -> dict:
    from imalys_stac.stac import Query, search
    from imalys_stac.stac.index import read_index
    from imalys_stac.stac.search import match_rows

    q = Query(bbox=_search_frame(), periods=[SEARCH_PERIOD])
    t0 = time.perf_counter()
    items = search(target, q)
    t1 = time.perf_counter()
    rows = read_index(Path(target) / "items.parquet").to_pylist()
    t2 = time.perf_counter()
    hits = match_rows(rows, q)
    t3 = time.perf_counter()
    return {"search_s": t1 - t0, "hits": len(items), "index_rows": len(rows), "index_read_s": t2 - t1,
            "match_s": t3 - t2, "item_json_s": max(0.0, (t1 - t0) - (t2 - t1) - (t3 - t2)),
            "hits_check": len(hits)}


# ---------------------------------------------------------------------------------------- run
def _measured(args: list[str]) -> dict:
    from benchmarks.memory import run_measured

    r = run_measured([sys.executable, "-m", "benchmarks.bench_catalog", *args],
                     env={**os.environ, "PYTHONPATH": str(HERE.parent)}, interval=0.1)
    detail = {}
    for line in r["output"].splitlines()[::-1]:
        if line.startswith("{"):
            detail = json.loads(line)
            break
    out = {"seconds": round(r["seconds"], 2), "peak_rss_mib": round(r["peak_rss"] / 2**20, 1),
           "ok": r["returncode"] == 0}
    out.update({k: (round(v, 3) if isinstance(v, float) else v) for k, v in detail.items()})
    return out


def _du(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def run_one(count: int) -> dict:
    pool = WORK / "pool"
    extra = _extra(count)
    names = [pool_name(i) for i in range(count + extra)]
    missing = [n for n in names if not (pool / n).is_file()]
    if missing:
        raise SystemExit(f"pool lacks {len(missing)} archives for --count {count}; run prepare --count {count}")
    folder = WORK / f"set-{count}"
    target = WORK / f"cat-{count}"
    for d in (folder, target):
        shutil.rmtree(d, ignore_errors=True)
    folder.mkdir(parents=True)
    for n in names[:count]:
        os.link(pool / n, folder / n)
    pattern = str(folder / "*.tar")
    res: dict = {"count": count, "cpus": os.cpu_count(), "date": date.today().isoformat()}

    print(f"[{count}] (a) first catalog …", flush=True)
    res["first"] = _measured(["_build", pattern, str(target)])
    res["first"]["archives_per_s"] = round(count / res["first"]["seconds"], 1)
    res["catalog_mib"] = round(_du(target) / 2**20, 1)
    res["index_mib"] = round((target / "items.parquet").stat().st_size / 2**20, 2)
    print(f"  {res['first']}", flush=True)

    print(f"[{count}] (b) unchanged re-run …", flush=True)
    res["rerun"] = _measured(["_build", pattern, str(target)])
    print(f"  {res['rerun']}", flush=True)

    print(f"[{count}] (c) -1 % / +1 % …", flush=True)
    for n in names[:count:100][:extra]:
        (folder / n).unlink()
    for n in names[count:count + extra]:
        os.link(pool / n, folder / n)
    res["update"] = _measured(["_build", pattern, str(target)])
    print(f"  {res['update']}", flush=True)

    print(f"[{count}] (d) search …", flush=True)
    res["search"] = _measured(["_search", str(target)])
    res["search"]["frame"] = [round(v, 4) for v in _search_frame()]
    res["search"]["period"] = [d.isoformat() for d in SEARCH_PERIOD]
    print(f"  {res['search']}", flush=True)
    return res


def run(counts: list[int]) -> None:
    results = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    runs = results.setdefault("runs", {})
    for n in counts:
        runs[str(n)] = run_one(n)
        save_results(RESULTS_JSON, results)


# ---------------------------------------------------------------------------------------- report
def report() -> None:
    results = json.loads(RESULTS_JSON.read_text())
    runs = results["runs"]
    cpus = results.get("machine", {}).get("cpus", "?")
    lines = [
        "## Catalog (build_catalog over metadata-only Landsat C2 L2 archives)", "",
        f"Each step in its own process on {cpus} CPUs; wall time and peak RSS of the whole process tree "
        "(main process + catalog workers), sampled from outside. Archives: 32-px synthetic scenes on a "
        "30 path × 10 row grid, 16-day cycle from 2013-04-11 (~90 KiB each, all members present). "
        "Phases inside build_catalog: read = open archives + make items (workers), write = item JSON, "
        "collection, index, state, atomic swap.", "",
        "| archives | step | wall s | archives/s | peak RSS MiB | read s | write s | added / updated / removed / unchanged |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for key in sorted(runs, key=int):
        r = runs[key]
        n = r["count"]
        for step, label in (("first", "first build"), ("rerun", "unchanged re-run"),
                            ("update", "−1 % / +1 %")):
            s = r.get(step)
            if not s:
                continue
            rate = s.get("archives_per_s") or ""
            counts = f"{s.get('added', '?')} / {s.get('updated', '?')} / {s.get('removed', '?')} / {s.get('unchanged', '?')}"
            ok = "" if s.get("ok", True) else " **failed**"
            lines.append(f"| {n:,} | {label}{ok} | {s['seconds']:.1f} | {rate} | {s['peak_rss_mib']:.0f} | "
                         f"{s.get('read_s', 0):.1f} | {s.get('write_s', 0):.1f} | {counts} |")
        s = r.get("search")
        if s:
            lines.append(f"| {n:,} | search (frame + 1 year) | {s['seconds']:.1f} | | {s['peak_rss_mib']:.0f} | "
                         f"| | {s.get('hits', '?')} hits; in-process {s.get('search_s', 0):.2f} s (index read "
                         f"{s.get('index_read_s', 0):.2f} s, filter {s.get('match_s', 0):.2f} s) |")
    lines.append("")
    sizes = [f"{runs[k]['count']:,}: {runs[k].get('catalog_mib', '?')} MiB ({runs[k].get('index_mib', '?')} MiB index)"
             for k in sorted(runs, key=int)]
    lines.append("Catalog size on disk — " + "; ".join(sizes) + ".")
    notes = results.get("notes")
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    lines.append("")
    lines.append("Written by `benchmarks/bench_catalog.py`.")
    section = "\n".join(lines) + "\n"
    write_section("catalog", section)
    print(section)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_catalog", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["prepare", "run", "report", "all", "_build", "_search"])
    ap.add_argument("args", nargs="*")
    ap.add_argument("--count", type=str, default="1000,10000", help="comma list, e.g. 1000,10000,50000")
    a = ap.parse_args()
    if a.step in ("_build", "_search"):
        out = _child_build(*a.args) if a.step == "_build" else _child_search(*a.args)
        print(json.dumps(out, default=str))
        return
    counts = [int(c) for c in a.count.split(",")]
    if a.step in ("prepare", "all"):
        prepare(max(counts))
    if a.step in ("run", "all"):
        run(counts)
    if a.step in ("report", "all"):
        report()


if __name__ == "__main__":
    main()
