"""Where Dask runs: the same chain in-process and on a real dask.distributed scheduler given by
address (as on a cluster) gives identical results; the environment can choose the scheduler."""
from __future__ import annotations

from datetime import date

import numpy as np
import pytest
import rasterio

from imalys_stac.chain import load_chain
from imalys_stac.commands import run_chain
from imalys_stac.runtime.cluster import ClusterSpec
from imalys_stac.synth import Landscape, SceneSpec, write_landsat_archive

from .conftest import RED_NIR, bestof_chain

distributed = pytest.importorskip("distributed")


def _chain(tmp, root, name, scheduler_line=""):
    return bestof_chain(tmp, root, name, home=scheduler_line, bands=RED_NIR)


def test_distributed_scheduler_by_address_gives_the_same_result(tmp_path, dask_processes):
    root = tmp_path / "archives"
    land = Landscape(seed=9)
    for i, d in enumerate([date(2022, 6, 16), date(2022, 7, 2), date(2022, 7, 18)]):
        write_landsat_archive(root, SceneSpec(path=193, row=26, acquired=d, size=96, cloud_cover=0.2, seed=40 + i), landscape=land)
    run_chain(load_chain(_chain(tmp_path, root, "local")))
    cluster = dask_processes(workers=2, threads=1)
    run_chain(load_chain(_chain(tmp_path, root, "remote", f"\tscheduler = {cluster.address}\n")))
    # the workers really did the work
    with distributed.Client(cluster.address) as client:
        assert sum(client.run(lambda dask_worker: len(dask_worker.data) + dask_worker.state.executed_count).values()) > 0
    with rasterio.open(tmp_path / "local.tif") as a, rasterio.open(tmp_path / "remote.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert np.isfinite(a.read()).mean() > 0.5


def test_environment_overrides_home(monkeypatch):
    monkeypatch.setenv("IMALYS_SCHEDULER", "tcp://10.0.0.1:8786")
    monkeypatch.setenv("IMALYS_WORKERS", "4")
    spec = ClusterSpec.resolve(None, 2, "1GB")
    assert (spec.scheduler, spec.workers, spec.memory, spec.kind) == ("tcp://10.0.0.1:8786", 4, "1GB", "address")
    monkeypatch.delenv("IMALYS_SCHEDULER")
    assert ClusterSpec.resolve("processes", None, None).kind == "processes"
    assert ClusterSpec.resolve(None, None, None).kind == "threads"


# ------------------------------------------------------------------ remote hrefs on the workers
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

from imalys_stac.runtime.cluster import GDAL_ENV, dask_runtime  # noqa: E402
from tests.http_range import serve_folder  # noqa: E402


def _gdal_env_now(keys):
    return {k: os.environ.get(k) for k in keys}


def test_gdal_settings_reach_every_worker_also_after_a_restart():
    with dask_runtime(ClusterSpec(scheduler="processes", workers=2, memory="1GB")) as client:
        # GDAL's block cache gets an eighth of the worker's memory limit (1 GB → 119 MiB)
        expected = {**GDAL_ENV, "GDAL_CACHEMAX": str(10**9 // 8 // 2**20)}
        first = client.run(_gdal_env_now, list(GDAL_ENV))
        assert len(first) == 2 and all(v == expected for v in first.values()), first
        client.restart()  # new worker processes (as after a crash): the plugin sets them again
        again = client.run(_gdal_env_now, list(GDAL_ENV))
        assert len(again) == 2 and all(v == expected for v in again.values())


def test_archive_and_cog_hrefs_over_http_are_read_on_the_workers(tmp_path):
    """Archives served over HTTP (Range requests) and read in place through /vsitar//vsicurl/ by
    the workers of a process cluster: the same composite as from the local files; the result COG
    read back through /vsicurl/ on the workers equals the file."""
    import rioxarray

    from tests.stac_api import serve_collection

    served = tmp_path / "served"
    land = Landscape(seed=4)
    for i, d in enumerate([date(2022, 6, 16), date(2022, 7, 2), date(2022, 7, 18)]):
        write_landsat_archive(served, SceneSpec(path=193, row=26, acquired=d, size=128, cloud_cover=0.2, seed=60 + i), landscape=land)
    catalog = tmp_path / "catalog.txt"
    catalog.write_text(f"IMALYS\nhome\n\tdirectory = {tmp_path}/wdc\n\tclear = true\ncatalog\n\tarchives = {served}/*.tar\n"
                       f"\ttarget = {tmp_path}/cat\n")
    run_chain(load_chain(catalog))
    (collection,) = (tmp_path / "cat").rglob("collection.json")

    def chain(name, source, scheduler=""):
        f = tmp_path / f"{name}.txt"
        f.write_text(f"IMALYS [{name}]\nhome\n\tdirectory = {tmp_path}/wd_{name}\n\tclear = true\n{scheduler}import\n"
                     f"{source}\tbands = red, nir08\n\tfactor = auto\ncompile\n\tsearch = LC08*\nreduce\n\tselect = compile\n"
                     f"\texecute = bestof\n\tpreserve = bands\nexport\n\tselect = bestof\n\ttarget = {tmp_path}/{name}.tif\n")
        return f

    run_chain(load_chain(chain("local", f"\tselect = {served}/*.tar\n")))
    www = tmp_path / "www"
    shutil.copytree(served, www)
    shutil.rmtree(served)  # from here on the archives exist only behind the HTTP server
    with serve_folder(www) as (base, ranges):
        # the collection as a STAC API whose items point at the archives on the HTTP server
        remote = tmp_path / "remote"
        shutil.copytree(collection.parent, remote)
        for item_file in remote.rglob("*.json"):
            doc = json.loads(item_file.read_text())
            if doc.get("type") != "Feature":
                continue
            for asset in doc["assets"].values():
                archive_rel, _, member = asset["href"].partition(".tar/")
                asset["href"] = f"/vsitar//vsicurl/{base}/{Path(archive_rel).name}.tar/{member}"
            item_file.write_text(json.dumps(doc))
        with serve_collection(remote) as url:
            run = chain("remote", f"\tstac = {url}\n\tcollections = landsat-c2-l2\n", "\tscheduler = processes\n\tworkers = 2\n")
            ctx = run_chain(load_chain(run))
        assert ctx.runlog.errors == 0
        # no warning but the nanny's slow-shutdown notice, which a loaded machine can add at the end
        warned = [line for line in ctx.runlog.path.read_text().splitlines() if " WARNING " in line
                  and not ("distributed.nanny" in line and "still alive after" in line)]
        assert warned == []
        assert any(r.endswith(".tar") for r in ranges()), "no range request for an archive reached the HTTP server"
        with rasterio.open(tmp_path / "local.tif") as a, rasterio.open(tmp_path / "remote.tif") as b:
            np.testing.assert_array_equal(a.read(), b.read())
        # the COG href on http(s):// read blockwise on the workers
        shutil.copy(tmp_path / "remote.tif", www / "result.tif")
        with dask_runtime(ClusterSpec(scheduler="processes", workers=2)) as client:
            da = rioxarray.open_rasterio(f"/vsicurl/{base}/result.tif", chunks={"x": 64, "y": 64}, lock=False)
            remote_pixels = client.compute(da.data).result()
        assert any(r.endswith("result.tif") for r in ranges())
        with rasterio.open(tmp_path / "remote.tif") as b:
            np.testing.assert_array_equal(remote_pixels, b.read())


# ------------------------------------------------------------------------------------ progress
def _progress_lines(log_text: str, step: str) -> list[int]:
    import re

    return [int(m) for m in re.findall(rf"INFO    imalys_stac\.progress:    {step}: (\d+) % \(", log_text)]


@pytest.mark.parametrize("where", ["threads", "address"])
def test_progress_lines_in_the_log_without_a_terminal(tmp_path, monkeypatch, where, dask_processes):
    """Without a TTY every long step logs percentage lines, on the in-process and on a
    distributed scheduler alike (reduce from the output written, import's quality pass from the
    tasks finished on the scheduler)."""
    monkeypatch.setenv("IMALYS_PROGRESS_INTERVAL", "0")
    root = tmp_path / "archives"
    land = Landscape(seed=3)
    for i, d in enumerate([date(2022, 6, 16), date(2022, 7, 2)]):
        write_landsat_archive(root, SceneSpec(path=193, row=26, acquired=d, size=128, cloud_cover=0.2, seed=70 + i), landscape=land)

    def run(scheduler_line=""):
        ctx = run_chain(load_chain(_chain(tmp_path, root, where, scheduler_line)), chunksize=32)
        return Path(ctx.runlog.path).read_text(encoding="utf-8")

    if where == "threads":
        text = run()
    else:
        cluster = dask_processes(workers=1, threads=2)
        text = run(f"\tscheduler = {cluster.address}\n")
        assert f"dask: {cluster.address}, 1 worker(s)" in text
    bestof = _progress_lines(text, "bestof")
    assert len(bestof) >= 3 and bestof == sorted(bestof) and bestof[-1] == 100 and bestof[0] < 100
    quality = _progress_lines(text, "quality")
    assert quality and quality[-1] == 100


def test_progress_bar_on_a_terminal_keeps_lines_for_the_file(caplog):
    """On a TTY the bar shows the progress; the percentage lines go to the file (DEBUG) only."""
    import logging

    from imalys_stac.runtime.progress import StepProgress

    with caplog.at_level(logging.DEBUG, logger="imalys_stac.progress"):
        step = StepProgress("bestof", tty=True, interval=0)
        for f in (0.25, 0.5, 0.75, 1.0):
            step.update(f, "output")
        assert step.bar is not None and step.bar.n == 100
        step.close()
    levels = {(r.levelno, r.getMessage().split(":")[1].strip()) for r in caplog.records}
    assert (logging.DEBUG, "25 % (0 s)") in levels and (logging.DEBUG, "100 % (0 s)") in levels
    assert all(r.levelno == logging.DEBUG for r in caplog.records)


def test_a_step_that_ends_between_polls_still_logs_its_end(caplog):
    """A distributed step can finish before the first poll of the scheduler's counts: with no line
    shown, its end is logged when it outlasted the interval, and not otherwise."""
    import logging

    from imalys_stac.runtime.progress import StepProgress

    with caplog.at_level(logging.DEBUG, logger="imalys_stac.progress"):
        StepProgress("quick", tty=False, interval=3600).close()
        StepProgress("quality", tty=False, interval=0).close()
    messages = [r.getMessage().strip() for r in caplog.records]
    assert messages == ["quality: 100 % (0 s)"]


def test_a_run_on_the_in_process_scheduler_imports_neither_distributed_nor_stackstac(tmp_path, synthetic_archives):
    """Start-up counts in every run: the in-process scheduler needs neither `distributed` (dask
    imports it to look for a client when the scheduler is given by name) nor stackstac (only its
    optional reader uses it); each costs about a second of imports on 2 cores."""
    import subprocess
    import sys

    from tests.conftest import bestof_chain

    chain = bestof_chain(tmp_path, synthetic_archives.folder, "startup")
    code = ("import sys; from imalys_stac.cli import main; rc = main(['run', sys.argv[1]]); "
            "print(rc, 'distributed' in sys.modules, 'stackstac' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(chain)], capture_output=True, text=True, timeout=600)
    assert out.stdout.split()[-3:] == ["0", "False", "False"], out.stdout + out.stderr
    assert (tmp_path / "startup.tif").is_file()
