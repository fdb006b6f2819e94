"""Screenshots of what `imalys-stac serve` shows in a real STAC Browser (headless Chromium).

    python docs/screenshots.py DEMO_DIR --tools /path/to/shared/tools [--out docs/img]

DEMO_DIR is a folder made by `imalys-stac demo` (archives/ with the catalog archives/bonds/,
the working directory .imalys/, results/). The script starts `imalys-stac serve` on the catalog and
on the results folder, serves the prebuilt STAC Browser of the tools folder (browse.py's), and takes
a screenshot of the catalog page, a collection, an archive item, the bestof product and the
exported result, with the rendered page text beside each PNG (exit 1 when a page shows an error).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start(folder: Path) -> tuple[subprocess.Popen, str, str]:
    proc = subprocess.Popen([sys.executable, "-m", "imalys_stac.cli", "serve", str(folder), "--port", "0"],
                            cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "IMALYS_NO_MALLOC_TUNING": "1"})
    first = proc.stdout.readline()
    base = first.rsplit(" at ", 1)[1].strip()
    cat = proc.stdout.readline().split()[-1]
    return proc, base, cat


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("demo", type=Path)
    ap.add_argument("--tools", type=Path, required=True, help="folder of browse.py and stac-browser/")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    ap.add_argument("--budget-ms", type=int, default=20000)
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location("browse", args.tools / "browse.py")
    browse = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(browse)
    chromium = browse.find_chromium()
    if chromium is None:
        print("Chromium not found (apt-get install -y chromium fonts-dejavu-core)", file=sys.stderr)
        return 2
    app = browse.serve(browse.DIST)
    app_base = f"http://127.0.0.1:{app.server_address[1]}/#/external/"
    demo = args.demo.resolve()
    procs = []
    try:
        p1, base1, cat1 = start(demo / "archives" / "bonds")
        p2, base2, cat2 = start(demo / "results")
        procs += [p1, p2]
        root1 = demo / "archives"
        item = next((demo / "archives" / "bonds" / "landsat-c2-l2").glob("*/*.json"))
        exported = next(p for p in sorted((demo / "results").glob("*.json"))
                        if json.loads(p.read_text()).get("type") == "Feature")
        pages = {
            "catalog": cat1,
            "collection": f"{base1}/bonds/landsat-c2-l2/collection.json",
            "archive-item": f"{base1}/{item.relative_to(root1).as_posix()}",
            "results": cat2,
            "bestof-item": f"{base2}/.imalys/bestof/bestof.json",
            "exported-item": f"{base2}/results/{exported.name}",
        }
        args.out.mkdir(parents=True, exist_ok=True)
        failed = 0
        for name, url in pages.items():
            png, txt = args.out / f"{name}.png", args.out / f"{name}.txt"
            text = browse.render(chromium, app_base + url.replace("http://", "http:/"), png, 1280, 900, args.budget_ms)
            txt.write_text(text + "\n")
            bad = [m for m in browse.ERROR_MARKERS if m in text.lower()]
            ok = png.is_file() and len(text) > 40 and not bad
            failed += not ok
            print(f"{'OK  ' if ok else 'FAIL'} {name}: {url} -> {png}" + (f"  (page says: {bad})" if bad else ""))
        return 1 if failed else 0
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        app.shutdown()


if __name__ == "__main__":
    sys.exit(main())
