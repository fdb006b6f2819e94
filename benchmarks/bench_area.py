"""Areas bigger than a scene: one seamless bestof over tiles of two WRS paths and two rows across
two UTM zones (paths 193/192 = zones 32/33, rows 26/27), 16 dates per path, compiled onto one
grid (EPSG:32632, 30 m) — on a local process cluster with a memory limit per worker.

    python -m benchmarks.bench_area run --sizes 512,1024 --memory 1GB   # peak memory per worker vs area
    python -m benchmarks.bench_area graph --pixels 100000 --size 128    # build (not compute) a 100k² bestof, part by part
    python -m benchmarks.bench_area report                              # RESULTS.md section

`run` generates the archives with imalys_stac.synth (scene side = size pixels; the frame covers
the four tiles' overlap region, ~1.7 scene widths), runs the chain as `imalys-stac run` in a child
process and samples the resident memory of every process of its tree: the runner (which writes
the COG) and each Dask worker process. `graph` compiles the same archives onto a grid of
`pixels` × `pixels` (a finer pixel over the same frame) and builds the reduce graph part by part
as `reduce` does (`--side`, default the command's part side; `--limit` builds a sample of parts),
without computing it: task count and build time of each part and in total.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import psutil

from .results_md import save_results, write_section

WORK = Path(__file__).resolve().parent / "work" / "area"
RESULTS = Path(__file__).resolve().parent / "results" / "area.json"
PATHS_ROWS = [(193, 26), (193, 27), (192, 26), (192, 27)]
BANDS = "_B2, _B3, _B4, _B5, _B6, _B7"


def prepare(size: int, dates: int, root: Path) -> Path:
    """Archives of the four tiles (16 dates per path; path 192 is seen 9 days after 193) and a frame."""
    from shapely.geometry import box

    from imalys_stac.synth import Landscape, SceneSpec, write_frame, write_landsat_archive, wrs_centre

    archives = root / "archives"
    if not (archives.exists() and len(list(archives.glob("*.tar"))) == len(PATHS_ROWS) * dates):
        land = Landscape(seed=5)
        for i in range(dates):
            for path, row in PATHS_ROWS:
                acquired = date(2022, 4, 1) + timedelta(days=16 * (i // 2) + (9 if path == 192 else 0) + 8 * (i % 2))
                write_landsat_archive(archives, SceneSpec(sensor="LC08" if i % 2 == 0 else "LC09", path=path, row=row,
                                                          acquired=acquired, size=size, cloud_cover=0.15 + 0.5 * ((i * 7) % 5) / 5,
                                                          seed=1000 + 10 * i + path + row), landscape=land, truth=False)
    centres = [wrs_centre(p, r, size) for p, r in PATHS_ROWS]
    lons, lats = [c[0] for c in centres], [c[1] for c in centres]
    pad = 0.3 * size * 30 / (111320 * np.cos(np.radians(np.mean(lats))))  # a third of a scene east and west
    frame = write_frame(root / "frame.geojson", box(min(lons) - pad, min(lats), max(lons) + pad, max(lats)), 4326)
    return frame


def chain_text(root: Path, frame: Path, memory: str, workers: int, pixel: float = 30, tail: bool = True) -> str:
    text = f"""IMALYS [bench_area: seamless bestof over 2 paths x 2 rows, 2 UTM zones]
home
	directory = {root}/wd
	clear = true
	scheduler = processes
	workers = {workers}
	memory = {memory}
	log = {root}
import
	select = {root}/archives/*.tar
	frame = {frame}
	bands = {BANDS}
	factor = 2.75e-5
	offset = -0.2
compile
	search = LC0*
	frame = {frame}
	crsystem = 32632
	pixel = {pixel}
"""
    if tail:
        text += f"""reduce
	select = compile
	execute = bestof
	preserve = bands
export
	select = bestof
	target = {root}/bestof.tif
"""
    return text


def run_tree(cmd: list[str], interval: float = 0.1) -> dict:
    """Run `cmd`; peak RSS of the runner and of each child process (the Dask workers)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks: dict[int, int] = {}
    names: dict[int, str] = {}
    stop = threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                for p in [root] + root.children(recursive=True):
                    try:
                        rss = p.memory_info().rss
                        peaks[p.pid] = max(peaks.get(p.pid, 0), rss)
                        names.setdefault(p.pid, " ".join(p.cmdline()[-3:]))
                    except psutil.NoSuchProcess:
                        pass
            except psutil.NoSuchProcess:
                return
            time.sleep(interval)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, _ = proc.communicate()
    stop.set()
    t.join()
    runner = peaks.pop(proc.pid, 0)
    # worker processes: multiprocessing children that imported the package (the resource
    # tracker and other helpers stay far below 100 MB)
    workers = sorted((v for v in peaks.values() if v > 100e6), reverse=True)
    return {"seconds": time.perf_counter() - start, "returncode": proc.returncode, "runner_peak": runner,
            "worker_peaks": workers, "output": out[-3000:]}


def run(sizes: list[int], dates: int, memory: str, workers: int) -> dict:
    from imalys_stac.runtime.cluster import parse_memory

    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.setdefault("runs", {})
    exe = str(Path(sys.executable).with_name("imalys-stac"))
    for size in sizes:
        root = WORK / f"s{size}"
        t0 = time.perf_counter()
        frame = prepare(size, dates, root)
        gen = time.perf_counter() - t0
        chain = root / "chain.txt"
        chain.write_text(chain_text(root, frame, memory, workers))
        r = run_tree([exe, "run", str(chain)])
        key = f"{size}@{memory}"
        if r["returncode"] != 0:
            print(r["output"], file=sys.stderr)
            error = next((ln for ln in r["output"].splitlines() if ln.startswith("error:")), "failed")
            results["runs"][key] = {"scene": size, "dates": dates, "archives": len(PATHS_ROWS) * dates, "memory": memory,
                                    "workers": workers, "seconds": round(r["seconds"], 1), "failed": error,
                                    "runner_peak": r["runner_peak"], "worker_peaks": r["worker_peaks"][:workers]}
            continue
        import rasterio

        with rasterio.open(root / "bestof.tif") as ds:
            shape, count = (ds.height, ds.width), ds.count
            valid = float((ds.read_masks(1) > 0).mean())
        images = sum(1 for p in (root / "wd").iterdir() if p.is_dir() and p.name.startswith("LC0"))
        row = {"scene": size, "dates": dates, "archives": len(PATHS_ROWS) * dates, "images": images,
               "grid": shape, "bands": count, "valid": round(valid, 4), "seconds": round(r["seconds"], 1),
               "generate_seconds": round(gen, 1), "memory": memory, "memory_bytes": parse_memory(memory),
               "workers": workers, "runner_peak": r["runner_peak"], "worker_peaks": r["worker_peaks"][:workers]}
        results["runs"][key] = row
        print(json.dumps(row))
    save_results(RESULTS, results)
    return results


def graph(pixels: int, size: int, dates: int, side: int | None, limit: int | None = None) -> dict:
    """Build (not compute) the bestof graph over a `pixels` × `pixels` grid of the same frame, part
    by part as `reduce` does (windows of `side` px, default the command's): tasks and build time
    of each part, and in total. `limit` parts only (a sample) when given."""
    import pyproj

    from imalys_stac.chain import load_chain
    from imalys_stac.commands import run_chain
    from imalys_stac.commands.reduce import part_side
    from imalys_stac.composite import reduce_stack
    from imalys_stac.cube.grid import Grid
    from imalys_stac.products import cube_of
    from imalys_stac.workdir import WorkDir
    from imalys_stac.write.blocks import part_windows

    root = WORK / f"g{size}"
    frame = prepare(size, dates, root)
    import geopandas as gpd

    b = gpd.read_file(frame).to_crs(pyproj.CRS.from_epsg(32632)).total_bounds
    pixel = max(b[2] - b[0], b[3] - b[1]) / pixels
    chain = root / "graph.txt"
    # no frame polygon here (the grid is the union of the tiles): a frame makes every image carry
    # a per-pixel region mask held as an array (groups × the part's pixels)
    text = chain_text(root, frame, "2GB", 1, pixel=round(pixel, 6), tail=False)
    text = text.replace("\tscheduler = processes\n\tworkers = 1\n\tmemory = 2GB\n", "")
    text = text.replace(f"\tframe = {frame}\n", "")
    chain.write_text(text)
    wd = WorkDir(root / "wd")
    if not (wd.exists("compile") and Grid.from_stac(wd.load("compile").properties).resolution == round(pixel, 6)):
        run_chain(load_chain(chain))
    item = wd.load("compile")
    grid = Grid.from_stac(item.properties)
    side = side or part_side()
    windows = part_windows(*grid.shape, side)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    parts = []
    t_all = time.perf_counter()
    for i, w in enumerate(windows[:limit] if limit else windows):
        t0 = time.perf_counter()
        cube = cube_of(wd, item, window=w)
        out = reduce_stack(cube, "bestof", quality=cube.coords["quality"].values)
        built = time.perf_counter() - t0
        n = len(dict(out.data.__dask_graph__()))
        blocks = len(out.data.chunks[-2]) * len(out.data.chunks[-1])
        parts.append({"window": list(w), "tasks": n, "blocks": blocks, "build_seconds": round(built, 2),
                      "materialised_seconds": round(time.perf_counter() - t0, 2)})
        print(json.dumps({"part": i, **parts[-1]}), flush=True)
        del cube, out
    total = time.perf_counter() - t_all
    results.setdefault("parts", {})[f"{pixels}@{side}"] = {
        "pixels": pixels, "pixel_m": pixel, "grid": list(grid.shape), "side": side, "layers": len(item.properties["imalys:inputs"]),
        "windows": len(windows), "built": len(parts), "total_seconds": round(total, 1),
        "tasks": sum(p["tasks"] for p in parts), "max_tasks": max(p["tasks"] for p in parts),
        "max_build_seconds": max(p["build_seconds"] for p in parts),
        "median_build_seconds": float(np.median([p["build_seconds"] for p in parts])),
        "load": os.getloadavg()[0], "parts": parts}
    save_results(RESULTS, results)
    return results


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def report() -> None:
    r = json.loads(RESULTS.read_text())
    lines = ["## Areas bigger than a scene (bench_area: 2 paths × 2 rows, 2 UTM zones, seamless bestof)", "",
             "Tiles of WRS paths 193/192 (UTM zones 32/33) and rows 26/27 generated by `imalys_stac.synth`, "
             "16 dates per path (path 192 seen 9 days after 193), the frame over the four tiles' overlap; "
             "`import` merges same-day rows, `compile` puts every image on one EPSG:32632 30 m grid, `reduce bestof`, "
             "export COG. `scheduler = processes` on this machine "
             f"({r['machine']['cpus']} CPUs); peak RSS sampled every 0.1 s for every process of the run.", "",
             ]
    for title, runs in (("Since the fixes (on a worker: tile cache a sixteenth of its memory, GDAL's block cache a "
                         "thirty-second, heap trimmed each second; one frame mask plane; reduce in parts):", r.get("runs", {})),
                        ("Before them (tile cache 768 MB per process, one graph; measured earlier the same day):",
                         r.get("runs_before", {}))):
        if not runs:
            continue
        lines += [title, "", "| scene side | archives | images | grid (px) | wall | runner peak | peak per worker | worker memory limit |",
                  "|---|---|---|---|---|---|---|---|"]
        for _, row in sorted(runs.items(), key=lambda kv: (kv[1]["memory"], kv[1]["scene"])):
            peaks = ", ".join(_gib(p) for p in row["worker_peaks"])
            if row.get("failed"):
                wall = f"{row['seconds']:.0f} s" if row["seconds"] >= 0 else "–"
                lines.append(f"| {row['scene']} | {row['archives']} | – | – | {wall} | {_gib(row['runner_peak']) if row['runner_peak'] else '–'} | "
                             f"{peaks or '–'} | {row['memory']} × {row['workers']} — **failed**: {row['failed'].removeprefix('error: ')} |")
                continue
            lines.append(f"| {row['scene']} | {row['archives']} | {row['images']} | {row['grid'][1]} × {row['grid'][0]} | "
                         f"{row['seconds']:.0f} s | {_gib(row['runner_peak'])} | {peaks} | {row['memory']} × {row['workers']} |")
        lines.append("")
    if r.get("notes"):
        lines += ["", r["notes"]]
    for g in sorted(r.get("graphs", {}).values(), key=lambda g: g["pixels"]):
        lines += ["", f"Graph of the same bestof with {g['pixels']:,} px across the frame ({g['pixel_m']:.3f} m pixels; "
                  "the grid is the union of the four tiles, no frame polygon), built but not computed "
                  "(`cube_of` + `reduce_stack`, then materialised to count the tasks):", "",
                  "| block side asked | blocks made (mean side) | grid (px) | tasks | build | materialise | one block (all images and bands, float32) |",
                  "|---|---|---|---|---|---|---|"]
        for row in g["rows"]:
            side = (row["grid"][0] * row["grid"][1] / row["blocks"]) ** 0.5
            block = side * side * row["layers"] * row["bands"] * 4
            lines.append(f"| {row['chunk']} | {row['blocks']:,} ({side:.0f} px) | {row['grid'][1]:,} × {row['grid'][0]:,} | "
                         f"{row['tasks']:,} | {row['build_seconds']:.0f} s | {row['materialise_seconds']:.1f} s | {_gib(block)} |")
    for g in sorted(r.get("parts", {}).values(), key=lambda g: (g["pixels"], -g["side"])):
        ny, nx = g["grid"]
        tasks = [p["tasks"] for p in g["parts"]]
        builds = [p["build_seconds"] for p in g["parts"]]
        sample = "" if g["built"] == g["windows"] else f" (the first {g['built']} of them built)"
        lines += ["", f"**In parts** (`reduce` since the fix): the same {g['pixels']:,}-px bestof ({nx:,} × {ny:,} px, "
                  f"{g['layers']} images × 6 bands) as {g['windows']} windows of at most {g['side']:,}² px{sample}, "
                  "each built as its own graph (`cube_of(window)` + `reduce_stack`) and counted, not computed "
                  f"(1-min load {g['load']:.1f} on 2 CPUs):", "",
                  "| parts built | tasks per part (median / max) | build per part (median / max) | tasks, all built parts | build, all built parts |",
                  "|---|---|---|---|---|",
                  f"| {g['built']} of {g['windows']} | {int(np.median(tasks)):,} / {max(tasks):,} | "
                  f"{np.median(builds):.1f} s / {max(builds):.1f} s | {sum(tasks):,} | {sum(builds):.0f} s ({g['total_seconds']:.0f} s with counting) |"]
    lines.append("")
    write_section("area", "\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("--sizes", default="512,1024")
    p_run.add_argument("--dates", type=int, default=16)
    p_run.add_argument("--memory", default="1GB")
    p_run.add_argument("--workers", type=int, default=2)
    p_graph = sub.add_parser("graph")
    p_graph.add_argument("--pixels", type=int, default=100_000)
    p_graph.add_argument("--size", type=int, default=256)
    p_graph.add_argument("--dates", type=int, default=16)
    p_graph.add_argument("--side", type=int, default=None, help="part side in pixels (default: reduce's)")
    p_graph.add_argument("--limit", type=int, default=None, help="build only the first LIMIT parts")
    sub.add_parser("report")
    args = ap.parse_args()
    os.environ.setdefault("IMALYS_PROGRESS_INTERVAL", "30")
    if args.cmd == "run":
        run([int(s) for s in args.sizes.split(",")], args.dates, args.memory, args.workers)
    elif args.cmd == "graph":
        graph(args.pixels, args.size, args.dates, args.side, args.limit)
    report()


if __name__ == "__main__":
    main()
