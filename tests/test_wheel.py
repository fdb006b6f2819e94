"""The installed package is complete without the repository: a wheel built from this checkout,
installed non-editable in a fresh venv, runs the demo and writes a catalog whose collection has
its template's title, providers, licence and keywords (package data read with importlib.resources).

The fresh venv takes the third-party dependencies from the test environment (a `.pth` line after
its own site-packages) so the test needs no download; everything of imalys-stac comes from the
wheel. The container image (deploy/Dockerfile) installs the same wheel the same way.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from imalys_stac.templates import collection_template, template_names

REPO = Path(__file__).resolve().parents[1]
ENTRYPOINT = REPO / "deploy" / "entrypoint.sh"
# a wheel build and a venv: tens of seconds
pytestmark = pytest.mark.timeout(900)


def _build_wheel(out: Path) -> Path:
    """Build the wheel the way the Dockerfile does (isolated build, then install non-editable);
    without network for the isolated build env, fall back to the test env's setuptools."""
    src = out / "src"
    # a copy of what the Dockerfile copies, so the build never writes into the shared checkout
    shutil.copytree(REPO / "imalys_stac", src / "imalys_stac", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    dist = out / "dist"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(src)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        res = subprocess.run(cmd[:4] + ["--no-build-isolation"] + cmd[4:], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    (wheel,) = dist.glob("imalys_stac-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin folder, wheel path) of a fresh venv holding the wheel, non-editable."""
    root = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(root)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # dependencies from the test environment, *after* the venv's own site-packages; the test
    # env's editable imalys_stac hook (a .pth there) is not processed from a plain path entry
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    res = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                          "--quiet", str(wheel)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return venv / "bin", wheel


def _env(bin_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "IMALYS_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_wheel_declares_the_extras_and_ships_the_templates(installed):
    _, wheel = installed
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    for cid in template_names():
        assert f"imalys_stac/templates/{cid}.json" in names
    assert {"imalys_stac/tutorial/chain2a.txt", "imalys_stac/py.typed"} <= names
    extras = set(re.findall(r"^Provides-Extra: (\S+)", meta, flags=re.M))
    # every extra the README tells users to install, and the one the image needs for Kubernetes
    readme = (REPO / "README.md").read_text(encoding="utf-8") + (REPO / "deploy" / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"imalys-stac\[([a-z0-9_,-]+)\]", readme))
    wanted = {e for group in named for e in group.split(",")} | {"nc", "kubernetes"}
    assert wanted <= extras, f"extras named in the READMEs but missing from the wheel: {wanted - extras}"
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    installs = re.search(r"imalys_stac-\*-py3-none-any\.whl\)\[([a-z0-9_,-]+)\]", dockerfile)
    assert installs and set(installs.group(1).split(",")) >= wanted - {"test"}, "the image must install every extra"


def test_installed_wheel_runs_the_demo_with_complete_collections(installed, tmp_path):
    bin_dir, _ = installed
    env = _env(bin_dir)
    where = subprocess.run([bin_dir / "python", "-c", "import imalys_stac; print(imalys_stac.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout.strip()
    assert Path(where).is_relative_to(bin_dir.parent), f"imalys_stac imported from {where}, not from the wheel"
    # through the image's entrypoint, as `docker run IMAGE demo DIR` would
    res = subprocess.run(["sh", str(ENTRYPOINT), "demo", str(tmp_path / "demo"), "--size", "96"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "demo" / "results" / "bestof_summer.tif").is_file()
    (collection,) = (tmp_path / "demo" / "archives").rglob("collection.json")
    doc = json.loads(collection.read_text(encoding="utf-8"))
    template = collection_template(doc["id"])
    assert template is not None
    for key in ("title", "providers", "license", "keywords", "description"):
        assert doc[key] == template[key], key
    assert doc["title"] and doc["providers"] and doc["keywords"]


def test_top_level_catalogs_show_the_package_templates():
    """`catalogs/` holds links to the package data; a copy that drifted would fail here."""
    shown = sorted(p.name for p in (REPO / "catalogs").glob("*.json"))
    assert shown == [f"{cid}.json" for cid in template_names()]
    for name in shown:
        assert json.loads((REPO / "catalogs" / name).read_text(encoding="utf-8")) == collection_template(name[:-5])
