"""`compile format = int16` against the default lazy float32 stack: time and size.

    python -m benchmarks.bench_compile_format [--work DIR] [--rounds 3]

Two cases, each imported once (not measured): the tutorial area (imalys-stac's generated tutorial
archives of path/row 193/026, framed, 6 bands) and a whole 1536² scene set of 4 dates (512-px
DEFLATE members, no frame). Then, in a process of its own each, best of `rounds`, the two chains
alternating: compile (lazy, or `format = int16`) → reduce bestof (bands preserved) → export COG.
Steps from the chain's log say where the time goes (the int16 compile computes the stack; its
reduce reads the stored integers instead of the archives). Sizes: the int16 stack against the
same stack written as a float32 COG by the same writer, both without overviews as compile
writes it (timed, best of `rounds`), and the two
bestofs' largest difference (half a scale step at most). Writes results/compile_format.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS_JSON = HERE / "results" / "compile_format.json"
BANDS = "\tbands = _B2, _B3, _B4, _B5, _B6, _B7\n\tfactor = 2.75e-5\n\toffset = -0.2\n"


def _import_chain(out: Path, select: str, frame: Path | None) -> Path:
    chain = out / "import.txt"
    chain.write_text(f"IMALYS [import once]\nhome\n\tdirectory = {out / 'wd'}\n\tclear = true\n\tlog = {out / 'logs'}\n"
                     f"import\n\tselect = {select}\n" + (f"\tframe = {frame}\n\tquality = 0.7\n" if frame else "")
                     + BANDS)
    return chain


def _variant_chain(out: Path, fmt: str, n: int) -> Path:
    """Round `n` names its own products: a chain whose products are up to date computes nothing."""
    chain = out / f"compile-{fmt}.txt"
    extra = "\tformat = int16\n" if fmt == "int16" else ""
    stack, bestof = f"stack_{fmt}_{n}", f"bestof_{fmt}_{n}"
    chain.write_text(f"IMALYS [compile {fmt}]\nhome\n\tdirectory = {out / 'wd'}\n\tlog = {out / 'logs'}\n"
                     f"compile\n\tsearch = LC0*\n{extra}\ttarget = {stack}\n"
                     f"reduce\n\tselect = {stack}\n\texecute = bestof\n\tpreserve = bands\n\ttarget = {bestof}\n"
                     f"export\n\tselect = {bestof}\n\ttarget = {out / f'bestof_{fmt}.tif'}\n\toverwrite = true\n")
    return chain


def stack_writes(wd: Path, out: Path, rounds: int) -> dict:
    """The lazy stack computed once, then written by write_cog as float32 and as int16 (best of rounds)."""
    import rioxarray  # noqa: F401
    import xarray as xr

    from imalys_stac.products import cube_of
    from imalys_stac.workdir import WorkDir
    from imalys_stac.write.cog import write_cog
    from imalys_stac.write.scaled import Scaling

    w = WorkDir(wd)
    cube = cube_of(w, w.load("stack_float32_0")).compute()
    t, b = cube.sizes["time"], cube.sizes["band"]
    stack = xr.DataArray(cube.values.reshape((t * b,) + cube.shape[2:]), dims=("band", "y", "x"),
                         coords={"y": cube.y, "x": cube.x}).rio.write_crs(cube.rio.crs)
    res: dict = {"layers": t * b, "shape": list(cube.shape[2:])}
    for _ in range(rounds):
        for key, kw in (("float32", {}), ("int16", {"scaling": Scaling()})):
            path = out / f"stack-{key}.tif"
            c0, t0 = time.process_time(), time.perf_counter()
            write_cog(stack, path, overviews="none", **kw)  # as compile stores its stack
            now = {"seconds": round(time.perf_counter() - t0, 3), "cpu_s": round(time.process_time() - c0, 3),
                   "mib": round(path.stat().st_size / 2**20, 2)}
            best = res.setdefault(key, now)
            best.update(seconds=min(best["seconds"], now["seconds"]), cpu_s=min(best["cpu_s"], now["cpu_s"]))
            path.unlink()
    return res


def _max_diff(a: Path, b: Path) -> dict:
    import numpy as np
    import rasterio

    with rasterio.open(a) as x, rasterio.open(b) as y:
        u, v = x.read().astype("float64"), y.read().astype("float64")
    ok = ~np.isnan(u)
    return {"same_nodata": bool(np.array_equal(ok, ~np.isnan(v))), "max_abs_diff": float(np.abs(u[ok] - v[ok]).max())}


def run_case(name: str, out: Path, select: str, frame: Path | None, rounds: int) -> dict:
    from benchmarks.bench_chain import _measured, _steps, warm_archives

    out.mkdir(parents=True, exist_ok=True)
    r = _measured([sys.executable, "-m", "imalys_stac.cli", "run", str(_import_chain(out, select, frame))])
    if not r["ok"]:
        return {"import": r}
    res: dict = {"case": name}
    warm_archives(Path(select).parent)
    for n in range(rounds):
        for fmt in ("float32", "int16"):
            m = _measured([sys.executable, "-m", "imalys_stac.cli", "run", str(_variant_chain(out, fmt, n))])
            m["steps"] = _steps(out / "logs")
            print(name, fmt, json.dumps(m), flush=True)
            best = res.get(fmt)
            if not m["ok"] or best is None or m["cpu_s"] < best["cpu_s"]:
                res[fmt] = m
            if not m["ok"]:
                return res
    stack = out / "wd" / "stack_int16_0" / "stack_int16_0.tif"
    res["stack_int16_mib"] = round(stack.stat().st_size / 2**20, 2)
    res["bestof"] = _max_diff(out / "bestof_float32.tif", out / "bestof_int16.tif")
    res["writes"] = _measured([sys.executable, "-m", "benchmarks.bench_compile_format", "_writes", str(out / "wd"),
                               str(out), str(rounds)])
    print(name, "writes", json.dumps(res["writes"]), flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_compile_format", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", nargs="?", default="run", choices=["run", "_writes"])
    ap.add_argument("args", nargs="*")
    ap.add_argument("--work", type=str, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    if a.step == "_writes":
        print(json.dumps(stack_writes(Path(a.args[0]), Path(a.args[1]), int(a.args[2]))))
        return
    from benchmarks.bench_original import prepare_ours
    from benchmarks.datasets import WORK, ArchiveSet
    from benchmarks.results_md import save_results

    work = (Path(a.work) if a.work else WORK).absolute()
    tutorial = work / "compile-format" / "tutorial-data"
    prepare_ours(tutorial)
    scene = ArchiveSet(1536, 512, False, 4)
    import benchmarks.datasets as ds

    ds.WORK = work
    scene.prepare()
    res = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rounds": a.rounds, "cases": {}}
    res["cases"]["tutorial"] = run_case("tutorial 193/026, framed", work / "compile-format" / "tutorial",
                                        f"{tutorial / 'archives'}/LC08_L2SP_193026_*.tar",
                                        tutorial / "frames" / "bounding-box.shp", a.rounds)
    res["cases"]["scene"] = run_case("1536² scene, 4 dates", work / "compile-format" / "scene",
                                     f"{scene.folder}/*.tar", None, a.rounds)
    save_results(RESULTS_JSON, res)


if __name__ == "__main__":
    main()
