"""The registries of reducers and output formats are the one source every layer reads."""
from __future__ import annotations

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr

from imalys_stac import registry
from imalys_stac.chain import ChainError, parse_chain_text
from imalys_stac.chain.values import EXPORT_ENDINGS
from imalys_stac.composite import METHODS, reference
from imalys_stac.write import FORMATS, write_image


def test_every_layer_reads_the_reducer_registry():
    from imalys_stac.chain.models import REDUCERS

    assert tuple(REDUCERS) == tuple(METHODS) == tuple(registry.REDUCERS)
    for name, entry in registry.REDUCERS.items():
        assert callable(entry.load_kernel()), f"{name}: its entry names no kernel"
        assert entry.load_reference() is getattr(reference, name), f"{name}: its reference is not composite/reference.py's"


@pytest.mark.parametrize("name", list(registry.REDUCERS))
def test_every_registered_kernel_equals_its_reference(name):
    """Through the entry alone (kernel and reference by name), on a small masked stack with ties."""
    from imalys_stac.composite import reduce_stack

    entry = registry.REDUCERS[name]
    rng = np.random.default_rng(3)
    stack = rng.integers(0, 6, (5, 3, 6, 7)).astype(np.float32)
    stack[rng.random(stack.shape) < 0.3] = np.nan
    stack[:, :, 0, 0] = np.nan  # a pixel with no valid date
    quality = np.array([0.9, 0.2, 0.5, 0.7, 0.1])
    bands = {"red": 1, "nir": 2, "blue": 3}
    cube = xr.DataArray(stack, dims=("time", "band", "y", "x"))
    got = reduce_stack(cube, name, quality=quality, **{n: bands[n] for n in entry.needs}).values
    expected = registry.reference_call(entry, stack, quality=quality, **bands)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("name", list(registry.REDUCERS))
def test_chain_asks_for_exactly_the_bands_a_reducer_needs(name):
    needs = registry.REDUCERS[name].needs
    text = f"IMALYS\nhome\n\tdirectory = /tmp/w\nreduce\n\tselect = compile\n\texecute = {name}\n"
    if needs:
        with pytest.raises(ChainError, match=" and ".join(needs)):
            parse_chain_text(text, "t.txt", check_files=False)
        text += "".join(f"\t{b} = {i}\n" for i, b in enumerate(needs, 1))
    parse_chain_text(text, "t.txt", check_files=False)


def test_unsupported_reducers_are_named():
    for name in registry.UNSUPPORTED_REDUCERS:
        with pytest.raises(ChainError, match="this version does not run"):
            parse_chain_text(f"IMALYS\nhome\n\tdirectory = /tmp/w\nreduce\n\tselect = c\n\texecute = {name}\n", "t.txt",
                             check_files=False)


def test_every_format_is_accepted_and_written_with_exactly_its_files(tmp_path):
    assert set(EXPORT_ENDINGS) == set(FORMATS) == set(registry.FORMATS)
    assert all(callable(f.load_writer()) for f in registry.FORMATS.values())
    data = np.random.default_rng(0).random((3, 40, 50)).astype("float32")
    da = xr.DataArray(data, dims=("band", "y", "x"),
                      coords={"band": ["b", "g", "r"], "y": 5e6 - 30 * np.arange(40) - 15, "x": 4e5 + 30 * np.arange(50) + 15})
    da = da.rio.write_crs(32632)
    for ending, fmt in registry.FORMATS.items():
        folder = tmp_path / (ending.strip(".") or "envi")
        folder.mkdir()
        target = folder / f"out{ending}"
        write_image(da, target)
        expected = {p.name for p in registry.companion_paths(target)}
        written = {p.name for p in folder.iterdir() if not p.name.endswith(".aux.xml")}
        assert written == expected, (ending, written)
        assert fmt.media_type


# ------------------------------------------------------------------------------------------ providers
class _Profile:
    """A minimal collection profile (no archive format), for registration tests."""

    name = "plain"
    collections = ("plain-collection",)
    quality = None
    api_aliases: dict = {}
    product_properties = ()

    def item_assets(self):
        return {}

    def owns(self, item):
        return False

    def band_table(self):
        return {}

    def is_auxiliary(self, key):
        return False

    def scene_key(self, item):
        return ("x", "", "20220101")

    def product_name(self, items):
        return "x"


PLAIN = _Profile()


def test_register_provider_adds_and_removes_one(monkeypatch):
    registry.register_provider("plain", PLAIN)
    try:
        assert registry.provider("plain") is PLAIN and PLAIN in registry.providers()
        assert PLAIN not in registry.archive_providers()  # a profile alone never opens a file
        assert registry.provider_for_collection("plain-collection") is PLAIN
        with pytest.raises(ValueError, match="registered already"):
            registry.register_provider("plain", PLAIN)
    finally:
        registry.unregister_provider("plain")
    with pytest.raises(KeyError, match="no provider 'plain'"):
        registry.provider("plain")
    with pytest.raises(TypeError, match="lacks owns"):
        registry.register_provider("broken", type("Broken", (), {m: getattr(PLAIN, m) for m in
                                                                  ("name", "collections", "quality", "api_aliases",
                                                                   "product_properties", "item_assets", "band_table",
                                                                   "is_auxiliary", "scene_key", "product_name")})())


def test_providers_of_other_distributions_come_from_the_entry_point_group(monkeypatch):
    """An installed distribution declares `[project.entry-points."imalys_stac.providers"]`; the
    registry reads the group once, on the first look-up (not at import), and a name registered in
    the package wins over an entry point of the same name."""
    from importlib.metadata import EntryPoint

    asked = []

    def entry_points(group):
        asked.append(group)
        return [EntryPoint("plain", "tests.test_registry:PLAIN", group),
                EntryPoint("landsat", "tests.test_registry:PLAIN", group)]

    monkeypatch.setattr("importlib.metadata.entry_points", entry_points)
    monkeypatch.setattr(registry, "_entry_points_read", False)
    try:
        assert asked == []
        assert registry.provider("plain") is PLAIN
        assert registry.provider("landsat").name == "landsat"  # the built-in one
        registry.providers()
        assert asked == ["imalys_stac.providers"]  # read once
    finally:
        registry.unregister_provider("plain")
