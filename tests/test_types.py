"""The narrowing helpers that replaced `# type: ignore`s when mypy took over the whole package
(issue 18): each still refuses what the ignore let through, and passes what it should."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from imalys_stac.archives.bands import BandInfo
from imalys_stac.chain import Chain, Command
from imalys_stac.chain.models import Catalog, Export, Home
from imalys_stac.chain.parser import params_as
from imalys_stac.commands import _params
from imalys_stac.errors import ImalysError
from imalys_stac.providers.sentinel2.archive import S2_BANDS
from imalys_stac.stac.search import Query
from imalys_stac.synth.scene import _reflectance_bands
from imalys_stac.synth.sentinel2 import _centre_and_width

pytestmark = pytest.mark.unit


def _export(select: str = "bestof", target: str = "/tmp/out.tif") -> Command:
    return Command("export", 7, Export(select=select, target=Path(target)))


def test_params_as_gives_the_commands_model():
    cmd = _export()
    assert params_as(cmd, Export).target == Path("/tmp/out.tif")


def test_params_as_refuses_another_model():
    with pytest.raises(TypeError, match="export at line 7 has Export parameters, not Catalog"):
        params_as(_export(), Catalog)


def test_chain_home_is_the_home_commands_parameters():
    home = Home(directory=Path("/tmp/w"))
    chain = Chain(Path("x.txt"), [Command("home", 1, home), _export()])
    assert chain.home is home


def test_params_of_a_dataclass_and_of_a_plain_object():
    assert _params(_export()) == {"select": "bestof", "target": Path("/tmp/out.tif"), "overwrite": False,
                                  "format": "float32", "scale": 0.0001, "offset": 0.0}
    # test doubles give plain namespaces; the run log records them as they are
    fake = SimpleNamespace(name="x", line=1, params=SimpleNamespace(a=1))
    assert _params(fake) == {"a": 1}


def test_reflectance_bands_in_table_order_and_without_other_roles():
    table = (BandInfo("SR_B2", "blue", "Blue", "blue", roles=("data", "reflectance")),
             BandInfo("ST_B10", "lwir11", "Thermal", "lwir11", roles=("data", "temperature")),
             BandInfo("SR_B4", "red", "Red", "red", roles=("data", "reflectance")))
    assert _reflectance_bands(table) == [("SR_B2", "blue"), ("SR_B4", "red")]


def test_reflectance_band_without_common_name_is_an_error():
    table = (BandInfo("SR_B2", "blue", "Blue", None, roles=("data", "reflectance")),)
    with pytest.raises(ValueError, match="SR_B2 has no common name"):
        _reflectance_bands(table)


def test_centre_and_width_in_nanometres():
    # Sentinel-2A B04: centre 665 nm, width 38 nm (ESA's spectral response table, rounded)
    red = next(b for b in S2_BANDS if b.suffix == "B04")
    assert _centre_and_width(red) == pytest.approx((665.0, 38.0))
    assert _centre_and_width(None) == (1373.5, 75.0)  # B10, not among the L2A bands
    with pytest.raises(ValueError, match="B99 has no wavelength"):
        _centre_and_width(BandInfo("B99", "x", "X"))


@pytest.mark.parametrize("bbox", [(7.5, 47.9, 7.9), (7.5, 47.9, 7.9, 48.1, 0.0)])
def test_query_still_names_a_bbox_of_the_wrong_length(bbox):
    with pytest.raises(ImalysError, match="accepted is \\(west, south, east, north\\)"):
        Query(bbox=bbox)
