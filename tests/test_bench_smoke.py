"""The chain benchmark's quick mode end to end (no timing is judged): tiny archives, a frame at an
odd offset and a two-zone warp, each through the chain, the notebook and the read floor."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    from benchmarks.bench_chain import quick

    return quick(tmp_path_factory.mktemp("bench"))


def test_every_variant_runs(quick):
    assert set(quick) == {"frame", "utm"}
    for name, r in quick.items():
        for variant in ("chain", "notebook", "floor"):
            assert r[variant]["ok"], (name, variant, r[variant].get("output"))
            assert r[variant]["seconds"] > 0 and r[variant]["peak_rss_gib"] > 0
            # CPU seconds of the child's tree: some, and no more than its wall time on every core
            assert 0 < r[variant]["cpu_s"] <= r[variant]["seconds"] * (os.cpu_count() or 1) * 1.05 + 1
            assert "load_before" in r[variant]
        assert r["floor"]["tiles"] > 0


def test_chain_and_notebook_pixels_identical(quick):
    """Inside the frame the chain's median equals the notebook's bit for bit; in the warped case
    wherever no warped scene contributes."""
    frame = quick["frame"]["pixels"]
    assert frame["identical"] and frame["identical_share"] == 1.0 and frame["valid_share"] > 0.3
    utm = quick["utm"]["pixels"]
    assert utm["identical"] and 0.1 < utm["native_share"] < 0.9, utm  # both parts exist
    assert utm["warped_identical_share"] > 0.5  # bilinear warps of different chunkings agree mostly


def test_each_tile_decoded_once(quick):
    """Every tile a read needs is decoded once by it, or was decoded by the import's quality count
    just before and kept for it (the QA tiles of a framed chain): never twice."""
    for r in quick.values():
        ch = r["chain"]
        assert ch["tiles_decoded"] + ch["tiles_reused"] == ch["tiles_needed"] > 0
    assert quick["frame"]["chain"]["tiles_reused"] > 0  # import and reduce in one chain: QA read once
