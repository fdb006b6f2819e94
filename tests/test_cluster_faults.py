"""Faults of a real Dask cluster (a scheduler and worker processes started here, as on a cluster):
a worker killed during `reduce` costs nothing but time and is logged; a cluster that loses all
its workers, or whose task keeps killing workers, ends with a clear error in bounded time, never
a hang and never exit 0."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import rasterio

from imalys_stac.chain import ChainError, load_chain
from imalys_stac.commands import run_chain
from imalys_stac.errors import ResourceError
from imalys_stac.runtime.cluster import ClusterSpec, cluster_faults, dask_runtime

from .conftest import SIX_BANDS, bestof_chain

if TYPE_CHECKING:
    from .conftest import ProcessCluster

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.timeout(600)


def chain_file(tmp: Path, root: Path, name: str, scheduler: str | None) -> Path:
    return bestof_chain(tmp, root, name, home=f"\tscheduler = {scheduler}\n" if scheduler else "", bands=SIX_BANDS)


class _Seen(logging.Handler):
    """Sets an event when a log message containing `text` is emitted."""

    def __init__(self, text: str):
        super().__init__(logging.DEBUG)
        self.text, self.event, self.lines = text, threading.Event(), []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        self.lines.append(msg)
        if self.text in msg:
            self.event.set()


def _kill_when_busy(cluster: ProcessCluster, started: threading.Event, victims: list[int], out: dict) -> None:
    """Once reduce has started, SIGKILL the given workers as soon as they run its tasks."""
    if not started.wait(300):
        return
    with distributed.Client(cluster.address, timeout="30s") as c:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            busy = {addr for addr, keys in c.processing().items() if keys}
            names = {addr: w["name"] for addr, w in c.scheduler_info(n_workers=-1)["workers"].items()}
            targets = [cluster.workers[i] for i in victims if f"w{i}" in {names[a] for a in busy}]
            if len(targets) == len(victims):
                out["tasks"] = {names[a]: len(k) for a, k in c.processing().items()}
                for p in targets:
                    os.kill(p.pid, signal.SIGKILL)
                out["killed"] = [p.pid for p in targets]
                return
            time.sleep(0.05)


def test_worker_killed_during_reduce_gives_the_identical_cog(tmp_path, cluster_archives, dask_processes):
    reference = chain_file(tmp_path, cluster_archives, "reference", None)
    run_chain(load_chain(reference))  # in-process: the undisturbed result
    cluster = dask_processes(workers=2)  # no nannies: a killed worker stays dead
    seen = _Seen("── reduce")
    logging.getLogger("imalys_stac").addHandler(seen)
    out: dict = {}
    try:
        killer = threading.Thread(target=_kill_when_busy, args=(cluster, seen.event, [0], out), daemon=True)
        killer.start()
        ctx = run_chain(load_chain(chain_file(tmp_path, cluster_archives, "disturbed", cluster.address)))
        killer.join(timeout=10)
        assert out.get("killed"), "the worker was not killed during reduce"
        assert cluster.workers[0].poll() is not None and cluster.workers[1].poll() is None
    finally:
        logging.getLogger("imalys_stac").removeHandler(seen)
        cluster.close()
    with rasterio.open(tmp_path / "reference.tif") as a, rasterio.open(tmp_path / "disturbed.tif") as b:
        pa, pb = dict(a.profile), dict(b.profile)
        assert np.isnan(pa.pop("nodata")) and np.isnan(pb.pop("nodata"))
        assert pa == pb
        np.testing.assert_array_equal(a.read(), b.read())
        assert np.isfinite(a.read(1)).mean() > 0.5
    # the log says what happened, as a warning, and the run ended without errors
    text = Path(ctx.runlog.path).read_text(encoding="utf-8")
    assert "WARNING imalys_stac.runtime: dask: worker tcp://127.0.0.1:" in text
    assert "died or lost contact while running" in text and "runs that work again on the remaining workers" in text
    assert ctx.runlog.errors == 0


def test_losing_every_worker_is_a_clear_error_in_bounded_time(tmp_path, cluster_archives, monkeypatch, dask_processes):
    monkeypatch.setenv("IMALYS_NO_WORKERS_TIMEOUT", "5")
    cluster = dask_processes(workers=2)
    seen = _Seen("── reduce")
    logging.getLogger("imalys_stac").addHandler(seen)
    out: dict = {}
    try:
        threading.Thread(target=_kill_when_busy, args=(cluster, seen.event, [0, 1], out), daemon=True).start()
        chain = chain_file(tmp_path, cluster_archives, "orphan", cluster.address)
        t0 = time.monotonic()
        res = None
        with pytest.raises(ChainError) as err:
            # through the CLI's own code path: a ChainError is a one-line error and exit 1
            run_chain(load_chain(chain))
        elapsed = time.monotonic() - t0
        assert out.get("killed")
        # CLI exit code for the same situation (a fresh cluster is not needed: none has workers now)
        res = subprocess.run([str(Path(sys.executable).with_name("imalys-stac")), "run", str(chain)],
                             capture_output=True, text=True, timeout=240,
                             env={**os.environ, "IMALYS_NO_WORKERS_TIMEOUT": "5"})
    finally:
        logging.getLogger("imalys_stac").removeHandler(seen)
        cluster.close()
    msg = str(err.value)
    assert "orphan.txt:" in msg and "reduce" in msg
    assert "the Dask cluster has had no worker for 5 s; the run stopped" in msg
    assert elapsed < 240
    assert res.returncode != 0
    assert res.stderr.strip().splitlines()[-1].startswith("error: ") and "no worker for 5 s" in res.stderr
    assert "Traceback" not in res.stderr


def _killer() -> None:
    os._exit(1)  # what the kernel's OOM killer does to a worker, as far as Dask can tell


def test_a_task_that_keeps_killing_workers_fails_clearly(monkeypatch):
    import dask

    spec = ClusterSpec(scheduler="processes", workers=1, memory="600MB")
    t0 = time.monotonic()
    with dask_runtime(spec) as client:
        with pytest.raises(ResourceError) as err:
            with cluster_faults(client):
                dask.delayed(_killer)().compute()
    assert time.monotonic() - t0 < 180
    msg = str(err.value)
    assert "a task killed 4 Dask workers in a row and was given up" in msg and "memory" in msg
    assert "memory" in err.value.hint


def test_worker_memory_too_small_is_refused_up_front(tmp_path, cluster_archives, monkeypatch):
    """`home memory` is checked by the chain validator; the same limit from the environment of a
    batch job (IMALYS_MEMORY) is refused before any worker starts, instead of 300 restarts."""
    monkeypatch.setenv("IMALYS_MEMORY", "1KB")
    chain = chain_file(tmp_path, cluster_archives, "tiny", "processes")
    t0 = time.monotonic()
    with pytest.raises(ChainError) as err:
        run_chain(load_chain(chain))
    assert time.monotonic() - t0 < 30
    msg = str(err.value)
    assert msg.startswith(f"{chain}:") or "tiny.txt:" in msg
    assert "home: memory = 1KB per worker is too small" in msg and "at least 256MiB or 270MB" in msg


@pytest.mark.parametrize("kind", ["any worker", "a restricted worker"])
def test_paused_workers_are_a_memory_error_whatever_the_task_waited_for(kind):
    """A task that timed out waiting for a worker while every worker is paused (memory) is one
    located resource error, also when the task was restricted to some workers (the writer's)."""
    from distributed.scheduler import NoValidWorkerError, NoWorkerError

    from imalys_stac.errors import ResourceError
    from imalys_stac.runtime.cluster import cluster_faults

    class PausedCluster:
        status = "running"

        def scheduler_info(self, n_workers=-1):
            return {"workers": {"tcp://a": {"status": "Status.paused"}, "tcp://b": {"status": "Status.paused"}}}

    error = NoWorkerError("task-1", 60.0) if kind == "any worker" else NoValidWorkerError("task-1", set(), {"tcp://a"}, {}, 60.0)
    with pytest.raises(ResourceError) as err:
        with cluster_faults(PausedCluster()):
            raise error
    assert "all 2 Dask worker(s) are paused" in str(err.value) and "60 s" in str(err.value)
    assert "more memory" in err.value.hint
