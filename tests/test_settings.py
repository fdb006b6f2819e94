"""One settings module (issue 18): every IMALYS_* variable read and checked in
`Settings.from_env()`, bad values as one located line, the docs table generated from it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import imalys_stac
from imalys_stac.settings import FIELDS, MAX_WORKERS, Settings, SettingsError, markdown_table

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(imalys_stac.__file__).parent


def test_an_empty_environment_gives_the_defaults():
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({"IMALYS_WORKERS": "  "}) == Settings()  # empty counts as unset


def test_values_are_parsed():
    s = Settings.from_env({"IMALYS_WORKERS": "3", "IMALYS_MEMORY": "2GiB", "IMALYS_NO_WORKERS_TIMEOUT": "7.5",
                           "IMALYS_READER": "StackStac", "IMALYS_PART_PIXELS": "4096", "IMALYS_TILE_CACHE_MB": "100",
                           "IMALYS_NO_MALLOC_TUNING": "1", "IMALYS_GDAL_CACHEMAX": "256", "IMALYS_CLAIM_WORK": "w"})
    assert (s.workers, s.memory, s.no_workers_timeout, s.reader, s.part_pixels, s.tile_cache_mb) == \
        (3, "2GiB", 7.5, "stackstac", 4096, 100.0)
    assert s.no_malloc_tuning and s.malloc_env() == {}
    assert s.gdal_env()["GDAL_CACHEMAX"] == "256" and s.kube_claims()["work"] == "w"


@pytest.mark.parametrize("name, value, reason", [
    ("IMALYS_WORKERS", "two", f"not a whole number (1…{MAX_WORKERS})"),
    ("IMALYS_WORKERS", "0", f"out of range (1…{MAX_WORKERS})"),
    ("IMALYS_WORKERS", "100000", f"out of range (1…{MAX_WORKERS})"),
    ("IMALYS_NO_WORKERS_TIMEOUT", "soon", "not a number (> 0)"),
    ("IMALYS_NO_WORKERS_TIMEOUT", "0", "must be a finite number > 0"),
    ("IMALYS_PROGRESS_INTERVAL", "nan", "must be a finite number ≥ 0"),
    ("IMALYS_MEMORY", "4 apples", "'4 apples' is not a size"),
    ("IMALYS_READER", "gdal", "not one of tiles, stackstac"),
    ("IMALYS_PART_PIXELS", "8", "out of range (≥ 16)"),
    ("IMALYS_TILE_CACHE_MB", "-5", "must be a finite number > 0"),
    ("IMALYS_GDAL_CACHEMAX", "64MB", "not a whole number (≥ 1)"),
])
def test_a_bad_value_names_the_variable(name, value, reason):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({name: value})
    assert str(err.value) == f"environment variable {name} = {value!r}: {reason}"
    assert err.value.variable == name and "docs/settings.md" in err.value.hint


def test_a_bad_setting_stops_a_run_with_a_located_line_not_an_internal_error(tmp_path, monkeypatch, synthetic_archives):
    from imalys_stac.chain import ChainError, load_chain
    from imalys_stac.commands import run_chain

    from .conftest import bestof_chain

    chain = bestof_chain(tmp_path, synthetic_archives.folder, "env")
    monkeypatch.setenv("IMALYS_WORKERS", "two")
    with pytest.raises(ChainError) as err:
        run_chain(load_chain(chain))
    assert str(err.value).startswith("env.txt:2: home: environment variable IMALYS_WORKERS = 'two': not a whole number")
    assert not (tmp_path / "wd_env").exists()  # checked before any work


def test_only_the_settings_module_reads_imalys_variables():
    reads = re.compile(r"""(environ(\.get)?\s*[\[(]\s*|getenv\(\s*)f?["']IMALYS_""")
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if p.name != "settings.py" and reads.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
    names = {f.metadata["env"] for f in FIELDS}
    assert len(names) == len(FIELDS) and all(n.startswith("IMALYS_") for n in names)


def test_the_docs_table_is_generated_from_the_settings():
    text = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    start = text.index("| Variable |")
    end = text.index("<!-- end of the generated table -->")
    assert text[start:end] == markdown_table(), "docs/settings.md is stale: regenerate it from settings.markdown_table()"


def test_the_workers_get_the_users_gdal_cache_or_an_eighth_of_their_memory(monkeypatch):
    from imalys_stac.runtime.plugins import GdalEnvPlugin

    class Worker:
        class memory_manager:
            memory_limit = 10**9

    monkeypatch.delenv("IMALYS_GDAL_CACHEMAX", raising=False)
    monkeypatch.setenv("GDAL_CACHEMAX", "1")
    GdalEnvPlugin(Settings().gdal_env()).setup(Worker())
    assert __import__("os").environ["GDAL_CACHEMAX"] == str(10**9 // 8 // 2**20)
    GdalEnvPlugin(Settings(gdal_cachemax=300).gdal_env(), cachemax=300).setup(Worker())  # the user's value wins
    assert __import__("os").environ["GDAL_CACHEMAX"] == "300"


@pytest.mark.system
def test_importing_the_package_configures_nothing():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("GDAL_", "VSI_", "CPL_"))}
    # what imalys-stac itself would set (rasterio sets GDAL_CURL_CA_BUNDLE at its import: not ours)
    code = ("import os, imalys_stac.cube.tiles, imalys_stac.cube.load, imalys_stac.commands, imalys_stac.runtime.cluster; "
            "from imalys_stac.runtime.names import GDAL_ENV; print(sorted(k for k in GDAL_ENV if k in os.environ))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
