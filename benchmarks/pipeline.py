"""The whole chain against the notebook a user would otherwise write, side by side.

    python -m benchmarks.pipeline prepare [--size 4096] [--dates 8] [--cloud 0.3]
    python -m benchmarks.pipeline run                # naive + chain for every prepared date count
    python -m benchmarks.pipeline report             # → benchmarks/RESULTS.md (pipeline section)
    python -m benchmarks.pipeline all                # the three in a row

Both variants read the same generated archives (Landsat 8 C2 L2 tars, 6 optical bands + QA) and
end in a COG of the masked composite. Each runs in its own process; wall time and the peak RSS
of its whole process tree (Dask workers included) are sampled from outside.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from benchmarks.results_md import save_results, write_section

HERE = Path(__file__).resolve().parent
WORK = Path(os.environ.get("IMALYS_BENCH_WORK", HERE / "work"))
RESULTS_JSON = HERE / "results" / "pipeline.json"
BANDS = ["blue", "green", "red", "nir08", "swir16", "swir22"]


def prepare(size: int, dates: int, cloud: float, seed: int = 1) -> None:
    from imalys_stac.synth import Landscape, SceneSpec, write_landsat_archive

    folder = WORK / f"archives-{size}-{dates}"
    folder.mkdir(parents=True, exist_ok=True)
    landscape = Landscape(seed=seed)
    start = date(2022, 5, 15)
    for i in range(dates):
        acquired = start + timedelta(days=16 * i)
        if list(folder.glob(f"*_193026_{acquired:%Y%m%d}_*.tar")):
            continue
        t = time.perf_counter()
        write_landsat_archive(folder, SceneSpec(sensor="LC08", path=193, row=26, acquired=acquired, size=size,
                                                cloud_cover=cloud, seed=seed + i), landscape=landscape)
        print(f"prepared {acquired} ({size}²) in {time.perf_counter() - t:.1f} s", flush=True)


def _naive(archives: Path, out: Path) -> dict:
    """What a user writes in a notebook: stackstac, where on the QA mask, nanmedian, to_raster."""
    import threading

    import numpy as np
    import rioxarray  # noqa: F401
    import stackstac
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    from imalys_stac.stac import item_from_archive

    t0 = time.perf_counter()
    items = [item_from_archive(p) for p in sorted(archives.glob("*.tar"))]
    # float32 and the calibration by hand, as a careful user writes it: stackstac's own rescale
    # refuses float32 for a 2.75e-5 scale (its issue 206/208) and float64 is ~3x slower still
    stack = stackstac.stack(items, assets=BANDS + ["qa_pixel"], chunksize=1024, dtype="float32",
                            fill_value=np.float32(np.nan), rescale=False)
    qa = stack.sel(band="qa_pixel").fillna(1).astype("uint16")
    clear = ((qa & 0b11111) == 0)  # fill, dilated cloud, cirrus, cloud, shadow
    refl = (stack.sel(band=BANDS) * 2.75e-5 - 0.2).where(clear & (stack.sel(band=BANDS) > 0))
    median = refl.median("time", skipna=True)
    median = median.rio.write_crs(stack.rio.crs if stack.rio.crs else f"EPSG:{items[0].properties['proj:epsg']}")
    tmp = out.with_suffix(".tmp.tif")
    median.rio.to_raster(tmp, tiled=True, lock=threading.Lock(), compress="deflate")
    t1 = time.perf_counter()
    cog_translate(str(tmp), str(out), cog_profiles.get("deflate"), quiet=True)
    tmp.unlink()
    t2 = time.perf_counter()
    return {"compute_s": t1 - t0, "cog_s": t2 - t1}


def chain_file(archives: Path, out: Path) -> Path:
    """The chain the benchmark runs (the seed's 2a + 2b, whole scenes, no frame)."""
    wd = out.parent / f"wd-{out.stem}"
    chain = out.parent / f"{out.stem}.chain.txt"
    chain.write_text(
        "IMALYS [benchmark]\nhome\n"
        f"\tdirectory = {wd}\n\tclear = true\n\tlog = {out.parent / 'logs'}\n"
        f"import\n\tselect = {archives}/*.tar\n\tbands = _B2, _B3, _B4, _B5, _B6, _B7\n"
        "\tfactor = 2.75e-5\n\toffset = -0.2\n"
        "compile\n\tsearch = LC0*\n"
        "reduce\n\tselect = compile\n\texecute = bestof\n\tpreserve = bands\n"
        f"export\n\tselect = bestof\n\ttarget = {out}\n"
    )
    return chain


def run(variants: tuple[str, ...] = ("naive", "chain")) -> None:
    from benchmarks.memory import run_measured

    results = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    runs = results.setdefault("runs", {})
    for folder in sorted(WORK.glob("archives-*")):
        _, size, dates = folder.name.split("-")
        out_dir = WORK / f"out-{size}-{dates}"
        out_dir.mkdir(parents=True, exist_ok=True)
        for variant in variants:
            out = out_dir / f"{variant}.tif"
            if variant == "chain":  # exactly what a user runs: the command line on a chain file
                cmd = [sys.executable, "-m", "imalys_stac.cli", "run", str(chain_file(folder, out))]
            else:
                cmd = [sys.executable, "-m", "benchmarks.pipeline", "_naive", str(folder), str(out)]
            r = run_measured(cmd, env={**os.environ, "PYTHONPATH": str(HERE.parent)})
            detail = {}
            for line in r["output"].splitlines()[::-1]:
                if line.startswith("{"):
                    detail = json.loads(line)
                    break
            key = f"{size}x{size}, {dates} dates, {variant}"
            runs[key] = {"size": int(size), "dates": int(dates), "variant": variant, "seconds": round(r["seconds"], 2),
                         "peak_rss_gib": round(r["peak_rss"] / 2**30, 3), "ok": r["returncode"] == 0, **detail}
            print(key, runs[key], flush=True)
    save_results(RESULTS_JSON, results)


def report() -> None:
    results = json.loads(RESULTS_JSON.read_text())
    runs = results["runs"]
    lines = ["## Chain vs naive notebook (import → compile → reduce bestof → export COG)", "",
             "| scene | dates | variant | wall s | peak RSS GiB (process tree) | speed-up |", "|---|---|---|---|---|---|"]
    for key in sorted(runs, key=lambda k: (runs[k]["size"], runs[k]["dates"], runs[k]["variant"])):
        r = runs[key]
        naive = runs.get(f"{r['size']}x{r['size']}, {r['dates']} dates, naive")
        speed = f"{naive['seconds'] / r['seconds']:.1f}×" if naive and r["variant"] == "chain" and r["ok"] else ""
        lines.append(f"| {r['size']}² | {r['dates']} | {r['variant']} | {r['seconds']:.1f} | {r['peak_rss_gib']:.2f} | {speed} |")
    lines += [
        "",
        "Same generated archives for both (Landsat 8 C2 L2 tars, DEFLATE COG members, ~30 % cloud; 6 optical",
        "bands + QA_PIXEL), each variant in its own process on "
        f"{results.get('machine', {}).get('cpus', '?')} CPUs; peak RSS of the whole process tree sampled from outside.",
        "- naive: the notebook a user would write — `stackstac.stack(items, dtype=float32, rescale=False)`,",
        "  calibrate by hand, `where` on the QA flags, `.median('time', skipna=True)`, `rio.to_raster` + `cog_translate`.",
        "- chain: `imalys-stac run` on the seed's 2a + 2b (import → compile → reduce bestof → export) over whole scenes.",
        "",
        "Where the chain's time goes (8 dates, from its run log): import ≈ 2 s (one pass over the QA bands to measure",
        "quality), reduce ≈ 13 s, export ≈ 1 s (copy + COG check), start-up ≈ 1.5 s. Inside reduce, decompressing",
        "the DEFLATE archive members through GDAL is the floor (56 members × ~0.14 s CPU ≈ 4 s on two cores), the",
        "fused mask/calibrate/merge kernel and the bestof kernel take < 1 s together, and writing the COG",
        "(uncompressed tiled temp file, overviews, ZSTD copy) ≈ 3–4 s. Timings on this shared 2-CPU machine vary",
        "by ±20 % between runs; the ratio is measured side by side in one run.",
    ]
    section = "\n".join(lines) + "\n"
    write_section("pipeline", section)
    print(section)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["prepare", "run", "report", "all", "_naive"])
    ap.add_argument("args", nargs="*")
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--dates", type=str, default="8", help="comma list, e.g. 4,8")
    ap.add_argument("--cloud", type=float, default=0.3)
    ap.add_argument("--variants", type=str, default="naive,chain", help="comma list: naive, chain")
    a = ap.parse_args()
    if a.step == "_naive":
        print(json.dumps({k: round(v, 2) for k, v in _naive(Path(a.args[0]), Path(a.args[1])).items()}))
        return
    if a.step in ("prepare", "all"):
        for d in a.dates.split(","):
            prepare(a.size, int(d), a.cloud)
    if a.step in ("run", "all"):
        run(tuple(a.variants.split(",")))
    if a.step in ("report", "all"):
        report()


if __name__ == "__main__":
    main()
