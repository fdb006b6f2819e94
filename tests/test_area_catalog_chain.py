"""`catalog` then `import database = <the catalog's target>` in one chain (the tutorial's way to
build a larger area's archive database first): `check` accepts it before the folder exists, in
every spelling that names the same place, and the chain runs."""
from __future__ import annotations

import os
import shutil

import pytest

from imalys_stac.chain import ChainError, load_chain
from imalys_stac.cli import main

CHAIN = """IMALYS [catalog, then import from it]
home
\tdirectory = {wd}
\tclear = true
catalog
\tarchives = {archives}/*.tar
\ttarget = {target}
import
\tdatabase = {database}
\tbands = _B2, _B3, _B4
\tfactor = 2.75e-5
\toffset = -0.2
"""


@pytest.mark.parametrize("target, database", [
    ("{t}/catalog", "{t}/catalog"),            # the tutorial: a folder made by catalog
    ("{t}/catalog", "{t}/catalog/"),           # trailing slash
    ("{t}/catalog/", "{t}/catalog"),
    ("{t}/catalog", "{t}/./sub/../catalog"),   # another spelling of the same folder
    ("{t}/catalog", "{t}/catalog/catalog.json"),
    ("{t}/bonds.csv", "{t}/bonds.csv"),        # the Imalys table and the folder beside it
    ("{t}/bonds.csv", "{t}/bonds"),
    ("{t}/catalog/catalog.json", "{t}/catalog"),
])
def test_check_accepts_a_database_an_earlier_catalog_makes(tmp_path, write_chain, target, database):
    (tmp_path / "archives").mkdir()
    text = CHAIN.format(wd=tmp_path / "wd", archives=tmp_path / "archives", target=target.format(t=tmp_path),
                        database=database.format(t=tmp_path))
    chain = load_chain(write_chain(text))
    assert [c.name for c in chain.commands] == ["home", "catalog", "import"]


def test_relative_spellings_name_the_same_folder(tmp_path, write_chain, monkeypatch):
    (tmp_path / "archives").mkdir()
    monkeypatch.chdir(tmp_path)
    text = CHAIN.format(wd="wd", archives="archives", target="./cat", database=str(tmp_path / "cat"))
    load_chain(write_chain(text))
    text = CHAIN.format(wd="wd", archives="archives", target=str(tmp_path / "cat"), database="cat/")
    load_chain(write_chain(text))


def test_a_missing_database_no_catalog_makes_is_still_refused(tmp_path, write_chain):
    (tmp_path / "archives").mkdir()
    text = CHAIN.format(wd=tmp_path / "wd", archives=tmp_path / "archives", target=tmp_path / "catalog",
                        database=tmp_path / "other")
    with pytest.raises(ChainError, match=r"chain.txt:9: import: database = .*other"):
        load_chain(write_chain(text))
    # and a database that exists nowhere without an earlier catalog
    no_catalog = text.replace(f"catalog\n\tarchives = {tmp_path / 'archives'}/*.tar\n\ttarget = {tmp_path / 'catalog'}\n", "")
    with pytest.raises(ChainError, match=r"import: database = .*other"):
        load_chain(write_chain(no_catalog))


def test_the_chain_checks_and_runs(tmp_path, write_chain, synthetic_archives, capsys):
    archives = tmp_path / "archives"
    shutil.copytree(synthetic_archives.folder, archives)
    target = tmp_path / "results" / "catalog"
    chain = write_chain(CHAIN.format(wd=tmp_path / "wd", archives=archives, target=target, database=target))
    assert not target.exists()
    assert main(["check", str(chain)]) == 0
    assert "ok (3 commands" in capsys.readouterr().out
    assert main(["run", str(chain)]) == 0
    assert (target / "catalog.json").is_file()
    imported = sorted(p.name for p in (tmp_path / "wd").iterdir() if p.is_dir() and p.name.startswith("LC08"))
    assert len(imported) == len(synthetic_archives.archives), imported
    assert os.path.isdir(target)
