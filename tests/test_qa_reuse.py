"""One pass over the QA band: in a chain that imports and then reduces, the tiles of the quality
band the import's quality count decoded are handed to the reduce's read (`cube.tiles.
keep_decoded_tiles`), so each is decoded once — and the result is the same as decoding it again."""
from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import numpy as np
import rasterio

from imalys_stac.cube import tiles
from tests.conftest import bestof_chain


class _CountingDataset:
    """A source handle that counts the tiles read through it (the tile reader reads one tile per call)."""

    def __init__(self, ds, href: str, counts: Counter):
        self.ds, self.href, self.counts = ds, href, counts

    def read(self, *args, **kwargs):
        w = kwargs.get("window")
        self.counts[(self.href, None if w is None else (int(w.col_off), int(w.row_off)))] += 1
        return self.ds.read(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.ds, name)


def _run(tmp_path, archives, name: str, monkeypatch) -> tuple[Counter, np.ndarray]:
    from imalys_stac.cli import main

    counts: Counter = Counter()
    real = tiles._dataset
    monkeypatch.setattr(tiles, "_dataset", lambda href: _CountingDataset(real(href), href, counts))
    chain = bestof_chain(tmp_path, archives, name)
    assert main(["run", str(chain)]) == 0
    monkeypatch.setattr(tiles, "_dataset", real)
    with rasterio.open(tmp_path / f"{name}.tif") as ds:
        return counts, ds.read()


def test_qa_tiles_decoded_once_and_the_result_unchanged(tmp_path, synthetic_archives, monkeypatch):
    qa = "QA_PIXEL"
    counts, kept = _run(tmp_path, synthetic_archives.folder, "kept", monkeypatch)
    qa_reads = {k: n for k, n in counts.items() if qa in k[0]}
    assert qa_reads and max(qa_reads.values()) == 1, qa_reads
    # the same chain with nothing kept decodes each QA tile twice (import, then reduce)
    real_keep = tiles.keep_decoded_tiles

    @contextmanager
    def keep_nothing(enabled: bool = True, budget_mb=None):
        with real_keep(False):
            yield

    monkeypatch.setattr(tiles, "keep_decoded_tiles", keep_nothing)
    counts2, again = _run(tmp_path, synthetic_archives.folder, "again", monkeypatch)
    qa_reads2 = {k: n for k, n in counts2.items() if qa in k[0]}
    assert qa_reads2.keys() == qa_reads.keys() and min(qa_reads2.values()) == 2, qa_reads2
    np.testing.assert_array_equal(kept, again)
    # the other bands are read alike in both runs
    assert {k: n for k, n in counts.items() if qa not in k[0]} == {k: n for k, n in counts2.items() if qa not in k[0]}


def test_kept_tiles_within_their_budget_and_dropped_by_the_next_block():
    key = ("x.tif", (4, 4), 0, 0)
    a = np.zeros((4, 4), np.uint16)
    with tiles.keep_decoded_tiles(budget_mb=40 / 2**20):  # room for one 32-byte tile
        tiles._KEPT.offer(key, a)
        tiles._KEPT.offer(("x.tif", (4, 4), 0, 1), a)
    assert tiles._KEPT.nbytes == a.nbytes
    tiles._KEPT.offer(("x.tif", (4, 4), 0, 2), a)  # outside the block: not kept
    assert tiles._KEPT.take(("x.tif", (4, 4), 0, 2)) is None
    with tiles.keep_decoded_tiles(False):  # a new block forgets the tiles of the one before
        pass
    assert tiles._KEPT.take(key) is None
    with tiles.keep_decoded_tiles(budget_mb=1):
        tiles._KEPT.offer(key, a)
    assert tiles._KEPT.take(key) is a and tiles._KEPT.take(key) is None  # handed out once
    tiles.drop_kept_tiles()


def test_what_the_reduce_did_not_take_is_dropped(synthetic_archives, tmp_path):
    """Tiles kept for a reduce that it does not ask for (another frame, a scene it leaves out)
    are dropped when the reduce ends, not held for the rest of the process."""
    from imalys_stac.chain import load_chain
    from imalys_stac.commands import run_chain

    chain = bestof_chain(tmp_path, synthetic_archives.folder, "drop")
    text = chain.read_text()
    run_chain(load_chain(chain))  # the products, then the reduce again on its own with a stray kept tile
    reduce_only = tmp_path / "reduce.txt"
    reduce_only.write_text(text[:text.index("import\n")].replace("\tclear = true\n", "")
                           + text[text.index("reduce\n"):text.index("export\n")].replace(
                               "\tpreserve = bands\n", "\tpreserve = bands\n\ttarget = again\n"))
    with tiles.keep_decoded_tiles(budget_mb=1):
        tiles._KEPT.offer(("elsewhere.tif", (4, 4), 0, 0), np.zeros((4, 4), np.uint16))
    assert tiles._KEPT.tiles
    run_chain(load_chain(reduce_only))
    assert not tiles._KEPT.tiles and tiles._KEPT.nbytes == 0
