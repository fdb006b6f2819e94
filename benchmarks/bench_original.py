"""The five tutorial chains (2a–2e) with the original Imalys binary and with imalys-stac, on the same
generated tutorial data (`write_tutorial_collection(root, size=384, seed=0)`), each chain in a
process of its own, the two tools alternating chain by chain.

    IMALYS_ORIGINAL=/path/to/x_Imalys python -m benchmarks.bench_original [--work DIR]

writes `benchmarks/results/original.json`. Without IMALYS_ORIGINAL the original's column says
"not measured" (imalys-stac is still measured). The binary (public Imalys repository,
`binaries/x_Imalys`) is never part of this repository; it calls gdal-bin's tools and tar.

What the original needs, found by running it (GDAL 3.6, Imalys binary of the public repository):
- archives under the short names its tutorial uses (`LC08_L2SP_193026_20220515.tar`): `select`
  opens the named file as is, so the long USGS names of the generated archives give "Archive not
  available". Its archive folder holds only the short names (symlinks to the generated archives):
  its catalog takes every `*_L2SP_*.tar`, so both names side by side would list each scene twice.
- a writable current directory: it extracts the archives' members there (and removes them).
- its own dialect of the chains (`original_chain`): `warp`/`pixel` at import (without `warp` it
  calls `gdalwarp -t_srs EPSG:0` and aborts; its own tutorial gives `warp = 32632, pixel = 30`;
  the scenes are on that grid already, so it then calls no gdalwarp at all: no extra work),
  no `crsystem`/`pixel` under compile (it warps at import only), no `preserve` under reduce
  ("Undefined parameter under flatten"), and `period` alone under compile: its `search` and
  `period` select additively, so `search = LC0*.hdr` with a period stacks every image twice.

What differs in the results (recorded in the JSON, "outputs"): the bestofs share origin, pixel and
bands; the original's grid is one row and column smaller (224 × 231 against 225 × 232: its
`gdal_translate -projwin` crop of the frame's rectangle); 2b's values are identical in 99.8 % of
the pixels both have (one run: 2026-12-07). 2d selects differently: imalys-stac takes the path-192 scene of 2022-05-24 (warped from
UTM 33) and rejects 2022-08-03 by quality, the original the reverse — so 2e's autumn bestofs differ.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS_JSON = HERE / "results" / "original.json"
ENV = "IMALYS_ORIGINAL"
TAGS = ("2a", "2b", "2c", "2d", "2e")
#: the grid its own tutorial imports to (UTM 32N, 30 m): the grid imalys-stac's chains keep
ORIGINAL_GRID = (("warp", "32632"), ("pixel", "30"))
#: a scene in a working directory: sensor, path/row, date (`LC08_193026_20220515`), both tools
SCENE = re.compile(r"^L[CTEM]0\d_\d{6}_\d{8}$")
#: the long USGS archive name and its short tutorial form (product, level, path/row, date)
LONG_NAME = re.compile(r"^(L[CTEM]0\d_L\d[A-Z]{2}_\d{6}_\d{8})_\d{8}_\d{2}_[A-Z]\d\.tar$")


# ------------------------------------------------------------------ the original's layout
def short_name(archive: str) -> str:
    """`LC08_L2SP_193026_20220515_20220518_02_T1.tar` → `LC08_L2SP_193026_20220515.tar`."""
    m = LONG_NAME.match(archive)
    if not m:
        raise ValueError(f"{archive}: not a USGS Collection 2 archive name")
    return m.group(1) + ".tar"


def _blocks(text: str) -> tuple[str, list[tuple[str, list[str]]]]:
    """A chain's header line and its commands, each with its parameter lines (comments kept)."""
    lines = text.splitlines()
    blocks: list[tuple[str, list[str]]] = []
    for line in lines[1:]:
        if not line.strip():
            continue
        if line[0] in " \t" or "=" in line:
            if not blocks:
                raise ValueError(f"parameter before any command: {line!r}")
            blocks[-1][1].append(line)
        else:
            blocks.append((line.strip(), []))
    return lines[0], blocks


def _key(line: str) -> str:
    return line.split("=", 1)[0].strip().lower()


def original_chain(text: str) -> tuple[str, list[str]]:
    """The chain in the original's dialect, and what was changed (one line each)."""
    header, blocks = _blocks(text)
    changes: list[str] = []
    out = [header]
    for command, params in blocks:
        keys = [_key(p) for p in params]
        kept = list(params)
        if command == "import":
            for k, v in ORIGINAL_GRID:
                if k not in keys:
                    kept.append(f"\t{k} = {v}")
                    changes.append(f"import: + {k} = {v} (without warp the original aborts: gdalwarp -t_srs EPSG:0)")
        elif command == "compile":
            dropped = [p for p in params if _key(p) in ("crsystem", "pixel")]
            if "period" in keys:
                dropped += [p for p in params if _key(p) == "search"]
            kept = [p for p in params if p not in dropped]
            for p in dropped:
                why = ("the original's search and period select additively: each image twice" if _key(p) == "search"
                       else "the original's compile has no grid: it warps at import")
                changes.append(f"compile: - {p.strip()} ({why})")
        elif command == "reduce":
            kept = [p for p in params if _key(p) != "preserve"]
            changes += [f"reduce: - {p.strip()} (unknown to the original; its bestof keeps the bands)"
                        for p in params if p not in kept]
        out.append(command)
        out += kept
    return "\n".join(out) + "\n", changes


def prepare_original(data: Path, root: Path) -> dict[str, Path]:
    """Lay out `root` for the original from imalys-stac's generated tutorial folder `data`:
    `archives/` with short-named symlinks to `data`'s archives (nothing else in it), the frames
    copied, empty `results/` and `scratch/` (its current directory), and the chains in its dialect.
    Returns the chains by tag; their changes are in `root/chains/changes.json`."""
    from imalys_stac.tutorial import chain_text, localise

    data, root = Path(data).absolute(), Path(root).absolute()
    for sub in ("archives", "results", "scratch", ".imalys", ".imalys-catalog", "chains"):
        shutil.rmtree(root / sub, ignore_errors=True)
    (root / "archives").mkdir(parents=True)
    for sub in ("results", "scratch", "chains"):
        (root / sub).mkdir()
    seen: dict[str, str] = {}
    for tar in sorted((data / "archives").glob("*.tar")):
        short = short_name(tar.name)
        if short in seen:
            raise ValueError(f"{tar.name} and {seen[short]} share the short name {short}")
        seen[short] = tar.name
        (root / "archives" / short).symlink_to(tar)
    shutil.copytree(data / "frames", root / "frames", dirs_exist_ok=True)
    chains, changes = {}, {}
    for tag in TAGS:
        text, changes[tag] = original_chain(localise(chain_text(tag), root))
        chains[tag] = root / "chains" / f"chain{tag}.txt"
        chains[tag].write_text(text, encoding="utf-8")
    (root / "chains" / "changes.json").write_text(json.dumps(changes, indent=1))
    return chains


def prepare_ours(root: Path) -> dict[str, Path]:
    """imalys-stac's tutorial folder: the generated archives (once) and its chains, results and the
    catalog of 2c removed (the original builds its catalog anew each time; an unchanged catalog of
    ours is kept in ~1 s, which would not compare)."""
    from imalys_stac.synth import write_tutorial_collection
    from imalys_stac.tutorial import write_chains

    if not (root / "archives").exists():
        write_tutorial_collection(root, size=384, seed=0)
    for old in (root / "archives").glob("bonds*"):
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    for sub in ("results", ".imalys", ".imalys-catalog"):
        shutil.rmtree(root / sub, ignore_errors=True)
    (root / "results").mkdir()
    return write_chains(root)


# ------------------------------------------------------------------ outputs
def scenes_in(workdir: Path) -> list[str]:
    """The imported scenes a working directory holds (both tools name them sensor_pathrow_date)."""
    return sorted(p.name for p in workdir.iterdir() if SCENE.match(p.name)) if workdir.is_dir() else []


def compare_images(ours: Path, original: Path) -> dict:
    """Grid, bands and type of both results, and their values where both grids overlap."""
    import numpy as np
    import rasterio

    out: dict = {}
    arrays = {}
    for key, path in (("imalys-stac", ours), ("original", original)):
        if not path.exists():
            out[key] = "missing"
            continue
        with rasterio.open(path) as ds:
            arrays[key] = (ds.read(masked=False).astype("float64"), ds.transform, ds.nodata)
            out[key] = {"shape": [ds.count, ds.height, ds.width], "dtype": ds.dtypes[0], "origin": [ds.transform.c, ds.transform.f],
                        "pixel": [ds.transform.a, -ds.transform.e], "crs": str(ds.crs),
                        "nodata": None if ds.nodata is None else str(ds.nodata)}  # NaN is no JSON
    if len(arrays) < 2:
        return out
    (a, ta, _), (b, tb, _) = arrays["imalys-stac"], arrays["original"]
    if (ta.a, ta.e) != (tb.a, tb.e) or a.shape[0] != b.shape[0]:
        out["values"] = "grids or bands differ"
        return out
    dx, dy = round((tb.c - ta.c) / ta.a), round((tb.f - ta.f) / ta.e)  # original's origin in ours' pixels
    y0, x0 = max(0, dy), max(0, dx)
    h = min(a.shape[1], dy + b.shape[1]) - y0
    w = min(a.shape[2], dx + b.shape[2]) - x0
    aa = a[:, y0:y0 + h, x0:x0 + w]
    bb = b[:, y0 - dy:y0 - dy + h, x0 - dx:x0 - dx + w]
    both = np.isfinite(aa) & np.isfinite(bb) & (bb != 0)  # the original writes 0 where it has no value
    diff = np.abs(aa - bb)[both]
    out["values"] = {"common_window": [h, w], "both_valid_share": round(float(both.mean()), 4),
                     "identical_share": round(float((diff < 1e-6).mean()), 4) if diff.size else None,
                     "median_abs_diff": round(float(np.median(diff)), 5) if diff.size else None,
                     "p95_abs_diff": round(float(np.percentile(diff, 95)), 5) if diff.size else None,
                     "band_means": {"imalys-stac": [round(float(aa[i][both[i]].mean()), 4) for i in range(aa.shape[0])],
                                    "original": [round(float(bb[i][both[i]].mean()), 4) for i in range(bb.shape[0])]}}
    return out


# ------------------------------------------------------------------ running
def _warm(folder: Path) -> None:
    for p in folder.glob("*.tar"):
        with open(p.resolve(), "rb") as f:
            while f.read(1 << 22):
                pass


def _median_run(runs: list) -> dict | str:
    """The run of median wall time (a string when the tool was not measured)."""
    if not isinstance(runs[0], dict):
        return runs[0]
    ranked = sorted(runs, key=lambda r: r["seconds"])
    return {**ranked[len(ranked) // 2], "runs_wall_s": [r["seconds"] for r in runs],
            "runs_cpu_s": [r["cpu_s"] for r in runs]}


def original_times(work: Path, rounds: int = 3) -> dict:
    """Both tools' tutorial chains in one run: wall and CPU seconds (process tree), success, outputs.
    `rounds` rounds of the five chains in order (2b and 2e need 2a's and 2d's products), the two
    tools alternating chain by chain; each figure is the run of median wall time.
    The original's figures are "not measured" when IMALYS_ORIGINAL names no executable file."""
    from benchmarks.bench_chain import _measured

    work = Path(work).absolute()
    binary = os.environ.get(ENV, "")
    runnable = bool(binary) and os.access(binary, os.X_OK)
    ours_root, orig_root = work / "original-cmp" / "imalys-stac", work / "original-cmp" / "original"
    ours = prepare_ours(ours_root)
    orig = prepare_original(ours_root, orig_root)
    changes = json.loads((orig_root / "chains" / "changes.json").read_text())
    _warm(ours_root / "archives")
    res: dict = {"binary": binary if runnable else None, "load_before": os.getloadavg(), "chains": {}, "outputs": {},
                 "rounds": rounds}
    runs: dict = {tag: {"imalys-stac": [], "original": []} for tag in TAGS}
    for _ in range(rounds):
        for tag in TAGS:
            runs[tag]["imalys-stac"].append(_measured([sys.executable, "-m", "imalys_stac.cli", "run", str(ours[tag])]))
            if runnable:
                # its current directory is where it extracts archive members: a folder of its own
                runs[tag]["original"].append(_measured(["env", "-C", str(orig_root / "scratch"), binary, str(orig[tag])]))
            else:
                runs[tag]["original"].append("not measured" + (f" ({ENV} is not set)" if not binary
                                                               else f" ({binary} is not executable)"))
            print(tag, json.dumps({k: v[-1] for k, v in runs[tag].items()}), flush=True)
    for tag in TAGS:  # the outputs compared are the last round's
        row: dict = {tool: _median_run(runs[tag][tool]) for tool in ("imalys-stac", "original")}
        row["original_changes"] = changes[tag]
        res["chains"][tag] = row
        if tag in ("2a", "2d"):
            res["outputs"][tag] = {"imported": {"imalys-stac": scenes_in(ours_root / ".imalys"),
                                                "original": scenes_in(orig_root / ".imalys") if runnable else None}}
        if tag == "2c":
            res["outputs"][tag] = {"catalog_rows": {"imalys-stac": _rows(ours_root / "archives" / "bonds.csv"),
                                                    "original": _rows(orig_root / "archives" / "bonds.csv") if runnable else None}}
        if tag in ("2b", "2e") and runnable:
            season = "summer" if tag == "2b" else "autumn"
            name = f"bestof_{season}.tif"
            res["outputs"][tag] = {"bestof": compare_images(ours_root / "results" / name, orig_root / "results" / name)}
    measured = [t for t in TAGS if isinstance(res["chains"][t]["original"], dict)]
    res["totals"] = {tool: {k: round(sum(res["chains"][t][tool][k] for t in measured), 2) for k in ("seconds", "cpu_s")}
                     for tool in ("imalys-stac", "original") if measured}
    res["totals_over"] = measured
    res["load_after"] = os.getloadavg()
    res["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return res


def _rows(csv: Path) -> int | None:
    return max(0, len(csv.read_text().splitlines()) - 1) if csv.exists() else None


def table(res: dict) -> str:
    """The markdown rows for a tutorial table: wall and CPU seconds of both tools per chain."""
    lines = ["| chain | imalys-stac wall s | CPU s | original wall s | CPU s | original ok |", "|---|---:|---:|---:|---:|---|"]
    for tag in TAGS:
        r = res["chains"][tag]
        o, s = r["original"], r["imalys-stac"]
        cells = (f"{o['seconds']:.2f} | {o['cpu_s']:.2f} | {'yes' if o['ok'] else 'no'}" if isinstance(o, dict)
                 else "not measured | | ")
        lines.append(f"| {tag} | {s['seconds']:.2f} | {s['cpu_s']:.2f} | {cells} |")
    t = res.get("totals") or {}
    if t:
        lines.append(f"| all five | {t['imalys-stac']['seconds']:.2f} | {t['imalys-stac']['cpu_s']:.2f} | "
                     f"{t['original']['seconds']:.2f} | {t['original']['cpu_s']:.2f} | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_original", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=str, default=None, help="scratch folder (default: benchmarks' work folder)")
    a = ap.parse_args()
    from benchmarks.datasets import WORK
    from benchmarks.results_md import save_results

    res = original_times(Path(a.work) if a.work else WORK)
    save_results(RESULTS_JSON, res)
    print(table(res))


if __name__ == "__main__":
    main()
