"""Read-only checks of one finished run (the shared ``finished_workdir``: import → compile → reduce
bestof → export on the synthetic archives), judged with other tools: pystac walks the catalog,
rasterio reads the pixels, the file system says what changed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pystac
import rasterio

from imalys_stac.cli import main


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_check_of_a_finished_chain_writes_nothing(finished_workdir, capsys):
    before = _snapshot(finished_workdir.workdir), _snapshot(finished_workdir.export.parent)
    assert main(["check", str(finished_workdir.chain)]) == 0
    assert "ok" in capsys.readouterr().out
    assert (_snapshot(finished_workdir.workdir), _snapshot(finished_workdir.export.parent)) == before


def test_the_working_directory_catalog_links_every_product_and_asset(finished_workdir):
    catalog = pystac.Catalog.from_file(str(finished_workdir.workdir / "catalog.json"))
    items = {item.id: item for item in catalog.get_items()}
    # three imports (one per archive), the compiled stack and the bestof
    assert len([i for i in items if i.startswith("LC08_")]) == 3 and {"compile", "bestof"} <= set(items)
    for item in items.values():
        for asset in item.assets.values():
            href = asset.get_absolute_href()
            if href and not href.startswith("/vsi"):
                assert Path(href).exists(), (item.id, href)


def test_the_export_holds_the_bestof_pixels(finished_workdir):
    with rasterio.open(finished_workdir.export) as out, \
            rasterio.open(finished_workdir.workdir / "bestof" / "bestof.tif") as product:
        assert (out.crs, out.transform, out.shape, out.count) == (product.crs, product.transform, product.shape, product.count)
        a, b = out.read(), product.read()
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_array_equal(a[~np.isnan(a)], b[~np.isnan(b)])
    assert np.isfinite(a).mean() > 0.5  # the bestof of three scenes, one mostly clear, covers most pixels
