"""The provider interface: both providers satisfy it member by member, no generic module imports a
provider, and a third provider — defined here, registered with one registry line — is picked up by
catalog, search, planning, the quality count and the import chain without any generic code knowing
it ("adding a provider is one subpackage plus one registry line"). API items with Planetary
Computer's asset keys read with the same rules as archive items."""
from __future__ import annotations

import ast
import json
import shutil
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.transform import from_origin
from shapely.geometry import Polygon, box, mapping
from shapely.geometry.polygon import orient

from imalys_stac import registry
from imalys_stac.archives import ArchiveError
from imalys_stac.archives.bands import BandInfo
from imalys_stac.archives.container import read_grid, read_tar_member, tar_members, vsitar
from imalys_stac.providers.base import (
    PROVIDER_MEMBERS,
    ArchiveFormat,
    CollectionProfile,
    ContainerFormat,
    ItemFields,
    Provider,
    QualityBand,
    SceneMetadata,
    date_key,
    item_parts,
)
from imalys_stac.providers.common import EXT, asset_template, proj_fields, raster_asset
from imalys_stac.registry import open_archive

PACKAGE = Path(__file__).resolve().parents[1] / "imalys_stac"


# ------------------------------------------------------------------------------ the two providers
@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """One Landsat tar and one Sentinel-2 zip (generated), opened and catalogued."""
    from imalys_stac.stac import item_from_archive
    from imalys_stac.synth import Landscape, SceneSpec, write_landsat_archive
    from imalys_stac.synth.sentinel2 import write_sentinel2_archive

    root = tmp_path_factory.mktemp("prov")
    land = Landscape(seed=5)
    ls = write_landsat_archive(root, SceneSpec(path=193, row=26, acquired=date(2022, 6, 16), size=64, seed=4),
                               landscape=land)
    s2 = write_sentinel2_archive(root, tile="32UPU", acquired=date(2022, 6, 15), size=48, seed=3, landscape=land)
    return {"landsat": (ls.path, item_from_archive(ls.path)), "sentinel-2": (s2.path, item_from_archive(s2.path))}


@pytest.mark.parametrize("name", ["landsat", "sentinel-2"])
def test_provider_satisfies_the_protocol(name, archives):
    p = registry.provider(name)
    assert isinstance(p, Provider)
    assert [m for m in PROVIDER_MEMBERS if not hasattr(p, m)] == []
    assert p.name == name and registry.provider(name) is p
    assert isinstance(p, ArchiveFormat) and isinstance(p, CollectionProfile)
    assert p.collections and all(isinstance(c, str) for c in p.collections)
    assert isinstance(p.container, ContainerFormat) and p.container.endings and p.container.description
    # the quality band: fill unusable, every rule a table over all codes, fill-only a superset of each rule
    q = p.quality
    assert isinstance(q, QualityBand) and q.rules
    present = q.table(None)
    assert present.shape == (65536,) and not present[q.fill_value]
    for rule in q.rules:
        assert not np.any(q.table(rule) & ~present)
    with pytest.raises(ValueError, match="unknown rule"):
        q.table("no-such-rule")
    # reading: the archive through the generic entry point gives this provider's metadata and item
    path, item = archives[name]
    assert registry.provider_for_path(path) is p
    meta = p.open(path)
    assert isinstance(meta, SceneMetadata) and meta.provider_name == name
    assert meta.href(meta.bands[0].suffix).startswith(("/vsitar/", "/vsizip/"))
    fields = p.item_fields(meta)
    assert isinstance(fields, ItemFields) and fields.assets and fields.extensions
    assert fields.properties["datetime"] == item.properties["datetime"]
    assert set(fields.assets) == set(item.assets) and q.asset in item.assets
    assert item.collection_id == p.collections[0]
    templates = p.item_assets()
    assert q.asset in templates and set(item.assets) <= set(templates) | {"thumbnail", "reduced_resolution_browse",
                                                                         "visual", "aot", "wvp", "preview"}
    # ownership: its own items (by collection, and by properties without one), not the other's
    other = archives["sentinel-2" if name == "landsat" else "landsat"][1]
    assert p.owns(item) and not p.owns(other)
    bare = item.to_dict(include_self_link=False, transform_hrefs=False)
    bare["collection"] = None
    assert p.owns(bare) and registry.provider_for_item(bare) is p
    assert registry.provider_for_item(item) is p and registry.provider_for_collection(p.collections[0]) is p
    # bands: every asset key of a band resolves to its BandInfo; the quality band is auxiliary
    table = p.band_table()
    assert isinstance(table, Mapping) and all(isinstance(b, BandInfo) for b in table.values())
    for b in meta.bands:
        assert table[b.key].key == b.key and table[b.suffix].key == b.key
    assert p.is_auxiliary(q.asset) and not p.is_auxiliary("red")
    assert all(v in table or v in templates or v == k.lower() for k, v in p.api_aliases.items())
    assert all(k in item.properties for k in p.product_properties)
    # planning
    key = p.scene_key(item)
    assert len(key) == 3 and all(isinstance(k, str) for k in key) and key[2] == item.datetime.strftime("%Y%m%d")
    assert p.scene_key(bare) == key  # a dict reads as the pystac item
    assert p.product_name([item]) == {"landsat": "LC08_193026_20220616", "sentinel-2": "S2A_32UPU_20220615"}[name]


def test_containers_are_recognised_by_name_then_magic(archives, tmp_path):
    ls, s2 = archives["landsat"][0], archives["sentinel-2"][0]
    renamed = tmp_path / "scene.bin"
    shutil.copy(ls, renamed)
    assert registry.provider_for_path(renamed).name == "landsat"  # the tar's "ustar" magic
    shutil.copy(s2, tmp_path / "product.dat")
    assert registry.provider_for_path(tmp_path / "product.dat").name == "sentinel-2"  # PK magic
    with pytest.raises(ArchiveError, match="scene.bin: member .* is not a readable raster"):
        open_archive(renamed)  # the provider's own reason (GDAL's /vsitar/ wants a .tar name)
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    with pytest.raises(ArchiveError, match="not an archive any provider reads .accepted: Landsat"):
        open_archive(junk)
    with pytest.raises(ArchiveError, match="no such file"):
        open_archive(tmp_path / "missing.txt")


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of every module an imalys_stac source file imports (relative ones resolved)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def test_no_generic_module_imports_a_provider():
    concrete = {f"imalys_stac.providers.{d.name}" for d in (PACKAGE / "providers").iterdir()
                if d.is_dir() and (d / "__init__.py").exists()}
    assert concrete >= {"imalys_stac.providers.landsat", "imalys_stac.providers.sentinel2"}
    offenders = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        rel = f.relative_to(PACKAGE).parts
        if rel[0] in ("providers", "synth"):
            continue
        bad = sorted(m for m in _imported_modules(f) if any(m == c or m.startswith(c + ".") for c in concrete))
        if bad:
            offenders[str(f.relative_to(PACKAGE))] = bad
    assert offenders == {}
    # the scan sees imports at all: a module known to import the provider base is found
    assert "imalys_stac.providers.base" in _imported_modules(PACKAGE / "stac" / "items.py")
    # and the providers themselves import no generic module above them (stac, cube, commands)
    for f in (PACKAGE / "providers").rglob("*.py"):
        assert not [m for m in _imported_modules(f) if m.startswith(("imalys_stac.stac", "imalys_stac.cube",
                                                                      "imalys_stac.commands"))], f


# ------------------------------------------------------------------------------ a third provider
FILL = 255
#: Fmask classes (as HLS): 0 clear, 1 water, 2 cloud shadow, 3 snow, 4 cloud, 255 fill
USABLE = (0, 1, 3)
TOY_BANDS = (
    BandInfo("B04", "red", "Red", "red", 0.65, 0.04, 1e-4, 0.0, None, 0, ("data", "reflectance"), 30.0),
    BandInfo("B08", "nir", "Near infrared", "nir", 0.86, 0.03, 1e-4, 0.0, None, 0, ("data", "reflectance"), 30.0),
    BandInfo("FMASK", "fmask", "Fmask classes", nodata=FILL, roles=("cloud", "cloud-shadow")),
)


def _fmask(codes: np.ndarray, rule: str | None) -> np.ndarray:
    return codes != FILL if rule is None else np.isin(codes, USABLE)


FMASK = QualityBand("fmask", FILL, ("flags", "confidence"), _fmask)


@dataclass(frozen=True)
class ToyMetadata(SceneMetadata):
    provider_name: ClassVar[str] = "toy"
    tile: str

    def href(self, suffix: str) -> str:
        return vsitar(self.archive, self.members[suffix])


class ToyProvider:
    """A Landsat-like product line: ``<id>.toy.tar`` with ``<id>_B04.tif``, ``<id>_B08.tif``,
    ``<id>_FMASK.tif`` and ``<id>_meta.json``; its API collection names the assets B04/B08/Fmask."""

    name = "toy"
    collections = ("toy-l2",)
    container = ContainerFormat("Toy L2 .toy.tar", (".toy.tar",))
    quality = FMASK
    api_aliases = {"B04": "red", "B08": "nir", "Fmask": "fmask"}
    product_properties = ("toy:tile",)

    def open(self, path: Path) -> SceneMetadata:
        infos = tar_members(path)
        names = {i.name.rsplit("_", 1)[-1].split(".")[0]: i.name for i in infos}
        meta = json.loads(read_tar_member(path, names["meta"]))
        grids = {b.suffix: read_grid(vsitar(path, names[b.suffix])) for b in TOY_BANDS}
        epsg = grids["B04"].epsg
        x0, y0, x1, y1 = grids["B04"].bbox
        lon, lat = Transformer.from_crs(epsg, 4326, always_xy=True).transform([x0, x1, x1, x0], [y0, y0, y1, y1])
        when = datetime.fromisoformat(meta["datetime"]).replace(tzinfo=timezone.utc)
        return ToyMetadata(archive=path, product_id=meta["id"], platform="toy-1", instruments=("toy",),
                           acquired=when.date(), datetime=when, cloud_cover=meta["cloud_cover"], epsg=epsg,
                           members=names, bands=TOY_BANDS, grids=grids,
                           footprint=orient(Polygon(list(zip(lon, lat))), 1.0), sun_azimuth=None,
                           sun_elevation=None, tile=meta["tile"])

    def item_fields(self, meta: SceneMetadata) -> ItemFields:
        assert isinstance(meta, ToyMetadata)
        ref = meta.grids["B04"]
        assets = {b.key: raster_asset(meta, b, "image/tiff; application=geotiff") for b in meta.bands}
        props: dict[str, Any] = {
            "datetime": meta.datetime.isoformat().replace("+00:00", "Z"), "platform": meta.platform,
            "instruments": list(meta.instruments), "eo:cloud_cover": meta.cloud_cover, "proj:epsg": meta.epsg,
            "proj:code": f"EPSG:{meta.epsg}", **proj_fields(ref), "grid:code": f"TOY-{meta.tile}",
            "toy:tile": meta.tile, "imalys:archive": str(meta.archive),
        }
        return ItemFields(props, assets, [EXT["eo"], EXT["proj"], EXT["raster"]])

    def item_assets(self) -> dict[str, Any]:
        return {b.key: asset_template(b, "image/tiff; application=geotiff") for b in TOY_BANDS}

    def owns(self, item) -> bool:
        _, collection, p, _ = item_parts(item)
        return collection in self.collections or "toy:tile" in p

    def band_table(self) -> dict[str, BandInfo]:
        return {n: b for b in TOY_BANDS for n in (b.key, b.suffix)}

    def is_auxiliary(self, key: str) -> bool:
        return key.lower() == "fmask"

    def scene_key(self, item) -> tuple[str, str, str]:
        return "TOY1", "", date_key(item)  # every tile of a day is one acquisition

    def product_name(self, items) -> str:
        tiles = sorted(item_parts(it)[2]["toy:tile"] for it in items)
        return f"TOY1_{tiles[0]}_{date_key(items[0])}"


TOY = ToyProvider()
EPSG = 32632


def _write_toy(folder: Path, tile: str, col: int, day: date, seed: int) -> tuple[Path, dict[str, np.ndarray]]:
    """One toy archive: a 40 × 40 tile at 30 m, `col` tiles east of the first; its arrays."""
    rng = np.random.default_rng(seed)
    n = 40
    arrays = {"B04": rng.integers(500, 3000, (n, n)).astype("uint16"),
              "B08": rng.integers(2000, 5000, (n, n)).astype("uint16"),
              "FMASK": rng.choice(np.array([0, 0, 0, 1, 2, 3, 4], "uint8"), (n, n))}
    arrays["FMASK"][:, :3] = FILL  # a strip outside the swath
    arrays["B04"][:, :3] = arrays["B08"][:, :3] = 0
    pid = f"TOY1_{tile}_{day:%Y%m%d}"
    src = folder / pid
    src.mkdir(parents=True)
    transform = from_origin(600000 + col * n * 30, 5700000, 30, 30)
    for suffix, a in arrays.items():
        with rasterio.open(src / f"{pid}_{suffix}.tif", "w", driver="GTiff", width=n, height=n, count=1,
                           dtype=a.dtype, crs=f"EPSG:{EPSG}", transform=transform,
                           nodata=FILL if suffix == "FMASK" else 0) as ds:
            ds.write(a, 1)
    (src / f"{pid}_meta.json").write_text(json.dumps({"id": pid, "tile": tile, "cloud_cover": 12.5,
                                                      "datetime": f"{day.isoformat()}T10:30:00"}))
    path = folder / f"{pid}.toy.tar"
    with tarfile.open(path, "w") as tar:
        for f in sorted(src.iterdir()):
            tar.add(f, arcname=f.name)
    shutil.rmtree(src)
    return path, arrays


@pytest.fixture
def toy(tmp_path):
    """The toy provider registered with one `register_provider` call; three archives (two tiles on one day)."""
    registry.register_provider("toy", TOY)
    folder = tmp_path / "archives"
    written = [_write_toy(folder, "T01", 0, date(2022, 6, 1), 1), _write_toy(folder, "T02", 1, date(2022, 6, 1), 2),
               _write_toy(folder, "T01", 0, date(2022, 6, 17), 3)]
    yield folder, written
    registry.unregister_provider("toy")


def test_a_third_provider_is_one_registry_line(toy, archives, tmp_path):
    from imalys_stac.cube.bands import resolve_band
    from imalys_stac.cube.plan import default_bands as _default_bands
    from imalys_stac.cube.plan import group_items, product_name
    from imalys_stac.cube.quality import quality_band
    from imalys_stac.stac import Query, build_catalog, search

    folder, written = toy
    assert isinstance(TOY, Provider) and [m for m in PROVIDER_MEMBERS if not hasattr(TOY, m)] == []
    # ".toy.tar" is a longer ending than Landsat's ".tar": the name decides for the toy provider
    assert registry.provider_for_path(written[0][0]) is TOY
    shutil.copy(archives["landsat"][0], folder)  # a Landsat archive in the same folder
    build_catalog(str(folder / "*.tar"), folder / "catalog")
    # the collection is the provider's, with its item_assets; the Landsat one beside it is unchanged
    collection = json.loads((folder / "catalog" / "toy-l2" / "collection.json").read_text())
    assert collection["item_assets"] == TOY.item_assets()
    assert (folder / "catalog" / "landsat-c2-l2" / "collection.json").is_file()
    items = search(folder / "catalog", Query(collections=["toy-l2"]))
    assert [i.id for i in items] == ["TOY1_T01_20220601", "TOY1_T02_20220601", "TOY1_T01_20220617"]
    assert items[0].properties["grid:code"] == "TOY-T01" and items[0].assets["red"].href.startswith("/vsitar/")
    # search with a frame over the second tile only (the index rows know nothing of toy fields)
    x, y = Transformer.from_crs(EPSG, 4326, always_xy=True).transform(600000 + 40 * 30 + 600, 5700000 - 600)
    hits = search(folder / "catalog", Query(bbox=(x - 0.001, y - 0.001, x + 0.001, y + 0.001), collections=["toy-l2"]))
    assert [i.id for i in hits] == ["TOY1_T02_20220601"]
    # planning, quality band, default bands and band names: all the provider's
    groups = group_items(items)
    assert [[i.id for i in g] for g in groups] == [["TOY1_T01_20220601", "TOY1_T02_20220601"], ["TOY1_T01_20220617"]]
    assert [product_name(g) for g in groups] == ["TOY1_T01_20220601", "TOY1_T01_20220617"]
    assert quality_band(items[0]) is FMASK
    assert _default_bands(items[0]) == ["red", "nir"]
    assert resolve_band(items[0], "B08") == "nir" and resolve_band(items[0], "_B04") == "red"
    # a Landsat tile and a toy tile in one load are refused (their quality bands differ)
    from imalys_stac.cube.bands import Calibration
    from imalys_stac.cube.counts import quality_counts
    from imalys_stac.cube.load import SceneGroup

    landsat = search(folder / "catalog", Query(collections=["landsat-c2-l2"]))
    mixed = SceneGroup("x", [items[0], landsat[0]], ["red"], Calibration((1.0,), (0.0,), "given"), "flags", "nearest")
    with pytest.raises(Exception, match="different quality bands.*fmask, qa_pixel"):
        from imalys_stac.cube.grid import Grid

        quality_counts(mixed, Grid.aligned(EPSG, (600000, 5698800, 601200, 5700000), 30.0, (0.0, 0.0)), "flags")


def test_a_third_provider_through_the_import_chain(toy, tmp_path):
    """`import` on the toy archives: grouping, naming, quality count, default bands, calibration and
    masking come from the provider; checked against numpy on the written arrays."""
    from imalys_stac.chain import load_chain
    from imalys_stac.commands import run_chain
    from imalys_stac.products import cube_of
    from imalys_stac.workdir import WorkDir

    folder, written = toy
    chain = tmp_path / "toy.txt"
    chain.write_text(f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd\n\tclear = true\n"
                     f"import\n\tselect = {folder}/*.toy.tar\n\tfactor = auto\n")
    run_chain(load_chain(chain))
    wd = WorkDir(tmp_path / "wd")
    assert sorted(wd.names()) == ["TOY1_T01_20220601", "TOY1_T01_20220617"]
    item = wd.load("TOY1_T01_20220601")
    p = item.properties
    assert p["imalys:bands"] == ["red", "nir"] and p["imalys:factor"] == [1e-4, 1e-4]
    assert p["toy:tile"] == "T01" and sorted(p["imalys:sources"]) == ["TOY1_T01_20220601", "TOY1_T02_20220601"]
    # independent reference: the two tiles side by side, Fmask classes 0/1/3 usable, 255 fill
    fmask = np.hstack([written[0][1]["FMASK"], written[1][1]["FMASK"]])
    red = np.hstack([written[0][1]["B04"], written[1][1]["B04"]]).astype(np.float64)
    usable = np.isin(fmask, USABLE)
    assert abs(p["imalys:quality"] - usable.sum() / (fmask != FILL).sum()) < 1e-6
    cube = cube_of(wd, item).isel(time=0)
    got = cube.sel(band="red").values
    assert got.shape == fmask.shape and usable.any() and (~usable).any()
    np.testing.assert_array_equal(np.isfinite(got), usable)
    np.testing.assert_allclose(got[usable], red[usable] * 1e-4, rtol=1e-6)


# ------------------------------------------------------------------------------ STAC API items
def _serve_with_keys(catalog_collection: Path, tmp: Path, rename: dict[str, str], collection: str | None = None):
    """A copy of a catalog collection whose items name their assets as another API does."""
    from tests.stac_api import serve_collection

    copy = tmp / catalog_collection.name
    shutil.copytree(catalog_collection, copy)
    for f in copy.glob("*/*.json"):
        d = json.loads(f.read_text())
        d["assets"] = {rename.get(k, k): a for k, a in d["assets"].items()}
        if collection:
            d["collection"] = collection
        f.write_text(json.dumps(d))
    return serve_collection(copy)


def test_planetary_computer_sentinel2_keys_read_as_the_archive_items(archives, tmp_path):
    """Planetary Computer's sentinel-2-l2a items name their assets B04, B8A, SCL: read from an API
    they get the provider's keys, the same quality band, default bands and names as the archive's."""
    from imalys_stac.cube.plan import default_bands as _default_bands
    from imalys_stac.cube.plan import product_name
    from imalys_stac.cube.quality import quality_band
    from imalys_stac.stac import build_catalog, search

    path, _ = archives["sentinel-2"]
    build_catalog([path], tmp_path / "cat")
    (archive_item,) = search(tmp_path / "cat")
    pc = {v: k for k, v in registry.provider("sentinel-2").api_aliases.items()}
    assert pc["red"] == "B04" and pc["scl"] == "SCL" and pc["nir08"] == "B8A"
    with _serve_with_keys(tmp_path / "cat" / "sentinel-2-l2a", tmp_path / "pc", pc) as url:
        (item,) = search(url)
    assert set(item.assets) == set(archive_item.assets)
    hrefs = lambda it: {k: a.href for k, a in it.assets.items() if k != "thumbnail"}  # noqa: E731 (the copy's PNG)
    assert hrefs(item) == hrefs(archive_item) and len(hrefs(item)) > 10
    assert quality_band(item) is registry.provider("sentinel-2").quality
    assert _default_bands(item) == _default_bands(archive_item)
    assert product_name([item]) == product_name([archive_item]) == "S2A_32UPU_20220615"


def test_earth_search_jp2_duplicates_are_no_default_bands(archives):
    """earth-search lists every Sentinel-2 band twice (COG `red`, JPEG 2000 `red-jp2`)."""
    from imalys_stac.cube.plan import default_bands as _default_bands
    from imalys_stac.stac.search import canonical_item, item_from_dict

    d = archives["sentinel-2"][1].to_dict(include_self_link=False, transform_hrefs=False)
    d["assets"].update({f"{k}-jp2": dict(a) for k, a in d["assets"].items() if k in ("red", "nir08", "scl")})
    item = item_from_dict(canonical_item(d))
    assert "red-jp2" in item.assets and "red-jp2" not in _default_bands(item)
    assert _default_bands(item) == _default_bands(archives["sentinel-2"][1])


def test_canonical_assets_keeps_a_key_whose_target_exists():
    from imalys_stac.providers.base import canonical_assets

    got = canonical_assets({"B04": 1, "red": 2, "SCL": 3}, {"B04": "red", "SCL": "scl"})
    assert got == {"B04": 1, "red": 2, "scl": 3}


def test_items_no_provider_owns_keep_the_generic_rules():
    import pystac

    from imalys_stac.cube.plan import product_name, scene_key

    item = pystac.Item("X_ABC_1", box(0, 0, 1, 1).__geo_interface__, [0, 0, 1, 1], datetime(2022, 5, 1, tzinfo=timezone.utc),
                       {"platform": "other-1", "grid:code": "ZONE-42"}, collection="other")
    assert registry.provider_for_item(item) is None
    assert scene_key(item) == ("other-1", "", "20220501")
    assert product_name([item]) == "other-1_42_20220501"


def test_band_names_resolve_through_the_provider_table(archives):
    """earth-search names the eo:bands of its Sentinel-2 COGs by common name ("red"), not "B04":
    `bands = B04` still finds the asset through the provider's band table."""
    from imalys_stac.cube.bands import BandError, resolve_band
    from imalys_stac.stac.search import item_from_dict

    d = archives["sentinel-2"][1].to_dict(include_self_link=False, transform_hrefs=False)
    for a in d["assets"].values():
        for b in a.get("eo:bands") or []:
            b["name"] = b.get("common_name", "x")
    item = item_from_dict(d)
    assert resolve_band(item, "B04") == "red" and resolve_band(item, "B8A") == "nir08" and resolve_band(item, "b08") == "nir"
    with pytest.raises(BandError):
        resolve_band(item, "B10")  # not in L2A


def test_import_from_an_api_with_planetary_computer_keys_equals_the_archive_import(archives, tmp_path):
    """`import stac = URL` on Sentinel-2 items named as Planetary Computer names them (B04, SCL, …)
    makes the same product as `import select = <zip>`: same bands, quality and pixels."""
    from imalys_stac.chain import load_chain
    from imalys_stac.commands import run_chain
    from imalys_stac.products import cube_of
    from imalys_stac.stac import build_catalog
    from imalys_stac.workdir import WorkDir

    path, _ = archives["sentinel-2"]
    build_catalog([path], tmp_path / "cat")
    pc = {v: k for k, v in registry.provider("sentinel-2").api_aliases.items()}

    def run(name: str, selection: str):
        chain = tmp_path / f"{name}.txt"
        chain.write_text(f"IMALYS\nhome\n\tdirectory = {tmp_path}/{name}\n\tclear = true\n"
                         f"import\n{selection}\tfactor = auto\n")
        run_chain(load_chain(chain))
        wd = WorkDir(tmp_path / name)
        (product,) = wd.names()
        item = wd.load(product)
        return product, item.properties, cube_of(wd, item).isel(time=0).values

    by_archive = run("zip", f"\tselect = {path}\n")
    with _serve_with_keys(tmp_path / "cat" / "sentinel-2-l2a", tmp_path / "pc", pc) as url:
        by_api = run("api", f"\tstac = {url}\n\tcollections = sentinel-2-l2a\n")
    assert by_api[0] == by_archive[0] == "S2A_32UPU_20220615"
    for key in ("imalys:bands", "imalys:factor", "imalys:offset", "imalys:quality", "imalys:mask", "proj:transform"):
        assert by_api[1][key] == by_archive[1][key], key
    assert "scl" not in by_api[1]["imalys:bands"] and len(by_api[1]["imalys:bands"]) == 12
    np.testing.assert_array_equal(by_api[2], by_archive[2])
    assert np.isfinite(by_api[2]).any() and np.isnan(by_api[2]).any()


# ----------------------------------------------------------- a STAC-API-only collection as data
#: Sentinel-2 L2A COGs as public STAC APIs publish them (asset keys B02 … and SCL, 10 m bands,
#: raster:bands scale), under a collection id no built-in provider owns: a profile, data only
TOY_S2_PROFILE = {
    "name": "toy-s2-cogs",
    "collections": ["toy-sentinel-2-l2a"],
    "bands": [
        {"key": "B02", "title": "Blue", "common_name": "blue", "wavelength": 0.49, "scale": 1e-4, "offset": 0.0,
         "nodata": 0, "gsd": 10.0},
        {"key": "B03", "title": "Green", "common_name": "green", "wavelength": 0.56, "scale": 1e-4, "offset": 0.0,
         "nodata": 0, "gsd": 10.0},
        {"key": "B04", "title": "Red", "common_name": "red", "wavelength": 0.665, "scale": 1e-4, "offset": 0.0,
         "nodata": 0, "gsd": 10.0},
        {"key": "B08", "title": "NIR", "common_name": "nir", "wavelength": 0.842, "scale": 1e-4, "offset": 0.0,
         "nodata": 0, "gsd": 10.0},
        {"key": "SCL", "title": "Scene classification", "nodata": 0, "roles": ["data-mask"], "gsd": 10.0},
    ],
    "quality_asset": "SCL",
    "quality_fill": 0,
    "quality_usable": {"flags": [4, 5, 6, 7, 11], "confidence": [4, 5, 6, 7, 11]},
    "auxiliary": ["aot", "wvp"],
    "sensor_property": "constellation",
}
SCL_USABLE = (4, 5, 6, 7, 11)


def _write_cog_items(folder: Path, collection: str) -> dict[str, dict[str, np.ndarray]]:
    """Two dates of one 10 m tile as COGs (B02, B03, B04, B08 uint16; SCL uint8) and a static
    collection of their items; returns the arrays by item id and asset key."""
    from imalys_stac.cube.grid import reproject_geometry

    size, x0, y0 = 48, 600000.0, 5300000.0
    transform = Affine(10.0, 0.0, x0, 0.0, -10.0, y0)  # (rasterio's from_origin warns about Affine's `*`)
    poly = reproject_geometry(box(x0, y0 - size * 10, x0 + size * 10, y0), 32632, 4326)
    rng = np.random.default_rng(11)
    col = {"type": "Collection", "stac_version": "1.1.0", "id": collection, "description": "toy COGs",
           "license": "CC-BY-4.0", "extent": {"spatial": {"bbox": [list(poly.bounds)]},
                                               "temporal": {"interval": [["2022-06-01T00:00:00Z", None]]}},
           "links": []}
    out: dict[str, dict[str, np.ndarray]] = {}
    for day in (date(2022, 6, 1), date(2022, 6, 11)):
        iid = f"S2B_32UPU_{day:%Y%m%d}_0_L2A"
        arrays: dict[str, np.ndarray] = {}
        assets = {}
        for key in ("B02", "B03", "B04", "B08", "SCL"):
            if key == "SCL":
                a = rng.choice(np.array([4, 5, 8, 9, 3, 6], np.uint8), size=(size, size))
                a[:, :5] = 0  # no data at the tile's edge
                dtype = "uint8"
            else:
                a = rng.integers(1, 9000, (size, size), dtype=np.uint16)
                a[:, :5] = 0
                dtype = "uint16"
            arrays[key] = a
            path = folder / f"{iid}_{key}.tif"
            with rasterio.open(path, "w", driver="COG", width=size, height=size, count=1, dtype=dtype, crs="EPSG:32632",
                               transform=transform, nodata=0, blocksize=256) as ds:
                ds.write(a, 1)
            rb = {"nodata": 0, "data_type": dtype, **({"scale": 1e-4, "offset": 0.0} if key != "SCL" else {})}
            assets[key] = {"href": str(path), "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                           "roles": ["data"], "proj:shape": [size, size], "proj:transform": list(transform)[:6],
                           "raster:bands": [rb]}
        item = {"type": "Feature", "stac_version": "1.1.0", "id": iid, "collection": collection,
                "geometry": mapping(poly), "bbox": list(poly.bounds),
                "properties": {"datetime": f"{day.isoformat()}T10:30:00Z", "platform": "sentinel-2b",
                               "constellation": "sentinel-2", "grid:code": "MGRS-32UPU", "proj:code": "EPSG:32632",
                               "eo:cloud_cover": 20.0},
                "assets": assets, "links": [],
                "stac_extensions": ["https://stac-extensions.github.io/projection/v1.2.0/schema.json",
                                    "https://stac-extensions.github.io/raster/v1.1.0/schema.json"]}
        (folder / iid).mkdir()
        (folder / iid / f"{iid}.json").write_text(json.dumps(item))
        col["links"].append({"rel": "item", "href": f"./{iid}/{iid}.json", "type": "application/geo+json"})
        out[iid] = arrays
    (folder / "collection.json").write_text(json.dumps(col))
    return out


@pytest.fixture
def toy_s2_profile():
    from imalys_stac.providers.profile import Profile

    profile = Profile.from_dict(TOY_S2_PROFILE)
    registry.register_provider(profile.name, profile)
    yield profile
    registry.unregister_provider(profile.name)


def test_a_profile_is_a_collection_profile_without_an_archive_format(toy_s2_profile):
    assert isinstance(toy_s2_profile, CollectionProfile) and not isinstance(toy_s2_profile, ArchiveFormat)
    assert registry.provider("toy-s2-cogs") is toy_s2_profile
    assert toy_s2_profile not in registry.archive_providers()  # never asked to open a file
    assert registry.provider_for_collection("toy-sentinel-2-l2a") is toy_s2_profile
    # its quality table against the class list, code by code
    table = toy_s2_profile.quality.table("flags")
    assert [c for c in range(256) if table[c]] == list(SCL_USABLE)
    assert not table[256:].any()
    # half an archive format is refused: a provider reads files fully or not at all
    half = type("Half", (), {m: getattr(toy_s2_profile, m) for m in dir(toy_s2_profile) if not m.startswith("_")})()
    half.container = TOY.container  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="lacks open, item_fields"):
        registry.register_provider("half", half)


def test_import_stac_of_a_collection_described_as_data(toy_s2_profile, tmp_path):
    """`import stac = URL` of a collection only a STAC API has (COGs, keys B02 … SCL), read through
    the data-only profile: default bands, quality mask, scale and product names all the profile's;
    pixels against the COGs read with rasterio and masked by the SCL class list."""
    from imalys_stac.chain import load_chain
    from imalys_stac.commands import run_chain
    from imalys_stac.products import cube_of
    from imalys_stac.workdir import WorkDir
    from tests.stac_api import serve_collection

    folder = tmp_path / "api"
    folder.mkdir()
    arrays = _write_cog_items(folder, "toy-sentinel-2-l2a")
    chain = tmp_path / "chain.txt"
    chain.write_text(f"IMALYS\nhome\n\tdirectory = {tmp_path}/work\n\tclear = true\n"
                     f"import\n\tstac = URL\n\tcollections = toy-sentinel-2-l2a\n\tfactor = auto\n")
    with serve_collection(folder) as url:
        chain.write_text(chain.read_text().replace("URL", url))
        run_chain(load_chain(chain))
    wd = WorkDir(tmp_path / "work")
    # the profile's names: <constellation>_<tile>_<date>
    assert sorted(wd.names()) == ["sentinel-2_32UPU_20220601", "sentinel-2_32UPU_20220611"]
    for name, iid in zip(sorted(wd.names()), sorted(arrays)):
        item = wd.load(name)
        assert item.properties["imalys:bands"] == ["B02", "B03", "B04", "B08"]  # SCL is auxiliary
        got = cube_of(wd, item).isel(time=0).values
        a = arrays[iid]
        usable = np.isin(a["SCL"], SCL_USABLE)
        for i, key in enumerate(("B02", "B03", "B04", "B08")):
            expected = np.where(usable & (a[key] != 0), a[key].astype(np.float64) * 1e-4, np.nan)
            np.testing.assert_allclose(got[i], expected, rtol=1e-6)
        assert np.isfinite(got).mean() > 0.3 and np.isnan(got).any()
        assert item.properties["imalys:quality"] == pytest.approx(usable.sum() / (a["SCL"] != 0).sum(), abs=1e-3)
