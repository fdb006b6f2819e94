"""A cloud-free composite with the Python API, and a picture of it beside the scenes it used.

    python examples/composite.py SOURCE OUT [--bbox W,S,E,N] [--datetime 2022-05-01/2022-09-30]
                                           [--quality 0.3] [--bands red,green,blue]

SOURCE is a STAC API URL (`imalys-stac serve CATALOG --api` gives one), a catalog made by
`imalys-stac catalog`, or a folder of Landsat/Sentinel-2 archives. OUT receives `bestof.tif`
(a Cloud Optimized GeoTIFF), its STAC item `bestof.json` and `bestof.png`: every scene the
composite used (clouds masked, with its date and quality) and the composite itself.

The same steps in a notebook:

    import imalys_stac as ims
    items = ims.search(SOURCE, bbox=..., datetime="2022-05-01/2022-09-30")
    cube = ims.load(items, bands=["red", "green", "blue"], quality=0.3)
    best = ims.reduce(cube, "bestof")
    ims.to_cog(best, "bestof.tif")
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import imalys_stac as ims


def stretch(rgb: np.ndarray, low: float, high: float) -> np.ndarray:
    """(band, y, x) reflectance → (y, x, 3) in 0…1 for display; NaN (no clear pixel) stays white."""
    out = np.clip((np.moveaxis(rgb[:3], 0, -1) - low) / (high - low), 0, 1)
    return np.where(np.isnan(out), 1.0, out)


def plot(cube, best, path: Path) -> Path:
    """The scenes (masked) in a row, then the composite, all with the same stretch."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no window
    import matplotlib.pyplot as plt

    scenes = cube.values
    composite = best.values
    finite = composite[np.isfinite(composite)]
    low, high = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
    high = high if high > low else low + 1e-3
    n = scenes.shape[0] + 1
    fig, axes = plt.subplots(1, n, figsize=(3 * n, 3.8), squeeze=False)
    for ax, scene, when, quality in zip(axes[0], scenes, cube.time.values, cube.quality.values):
        ax.imshow(stretch(scene, low, high))
        ax.set_title(f"{str(when)[:10]}\nquality {quality:.2f}", fontsize=9)
    axes[0][-1].imshow(stretch(composite, low, high))
    axes[0][-1].set_title(f"bestof of {scenes.shape[0]} scene(s)", fontsize=9, fontweight="bold")
    for ax in axes[0]:
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="STAC API URL, catalog or archive folder")
    ap.add_argument("out", type=Path, help="folder for bestof.tif, bestof.json and bestof.png")
    ap.add_argument("--bbox", help="west,south,east,north in degrees")
    ap.add_argument("--datetime", help="e.g. 2022-05-01/2022-09-30")
    ap.add_argument("--quality", type=float, default=None, help="least clear fraction of a scene (e.g. 0.3)")
    ap.add_argument("--bands", default="red,green,blue", help="bands to composite; the first three are shown")
    args = ap.parse_args(argv)

    bbox = [float(v) for v in args.bbox.split(",")] if args.bbox else None
    items = ims.search(args.source, bbox=bbox, datetime=args.datetime)
    print(f"{len(items)} scene(s) found")
    cube = ims.load(items, bands=args.bands.split(","), quality=args.quality)
    best = ims.reduce(cube, "bestof")
    args.out.mkdir(parents=True, exist_ok=True)
    item = ims.to_cog(best, args.out / "bestof.tif", overwrite=True)
    picture = plot(cube.compute(), best.compute(), args.out / "bestof.png")
    print(f"{args.out / 'bestof.tif'} ({item.properties['proj:shape'][1]} × {item.properties['proj:shape'][0]} px)")
    print(picture)
    return {"items": items, "cube": cube, "item": item, "cog": args.out / "bestof.tif", "plot": picture}


if __name__ == "__main__":
    main()
