"""Shared fixtures and the test loop's policy (see docs/testing.md).

- Tiers: every test is ``unit``, ``integration`` or ``system``; :func:`pytest_collection_modifyitems`
  assigns the tier a test does not declare itself, by module (:data:`MODULE_TIERS`).
- Hypothesis profiles ``dev`` (few examples, the default outside CI) and ``ci`` (the full counts),
  chosen by ``HYPOTHESIS_PROFILE``.
- Compiled kernels: one folder for the generated numba kernels for the whole run
  (``IMALYS_STAC_KERNEL_CACHE``), also when a test points ``HOME`` elsewhere.
- Session fixtures built once per run, shared by the xdist workers: the synthetic archives and a
  finished working directory that read-only tests share.

Fixtures defined in a test module with the same name win over these (pytest's rule), so the
older modules' own fixtures are untouched.
"""
from __future__ import annotations

import fcntl
import os
import pickle
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

DATA = Path(__file__).parent / "data"

# ------------------------------------------------------------------------- hypothesis profiles
# `ci` keeps the counts the tests were written with (a test's own @settings(max_examples=…) wins;
# the others get 150); `dev` caps every test at 10 examples, also those with their own count (see
# _cap_examples): enough to catch a broken property while editing, in a fraction of the time.
# Neither has a deadline: the machine is shared, and a slow example is not a failure here.
settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                          print_blob=True)
settings.register_profile("dev", max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
settings.load_profile(HYPOTHESIS_PROFILE)

# ------------------------------------------------------------------------------------ tiers
#: the tier of each module whose tests do not declare one; modules not named here are integration.
#: unit: no files, no subprocess; integration: in-process, on small synthetic archives in tmp
#: folders; system: subprocesses, Dask clusters, servers, signals, tmpfs mounts, wheel builds, the
#: benchmarks' smoke runs, the container image.
MODULE_TIERS = {
    "test_composite": "unit",
    "test_fuzz_kernels": "unit",
    "test_product_records": "unit",
    "test_atomic_swap": "system",
    "test_bench_smoke": "system",
    "test_cluster_faults": "system",
    "test_deploy": "system",
    "test_runtime": "system",
    "test_scale": "system",
    "test_serve": "system",
    "test_wheel": "system",
}
TIERS = ("unit", "integration", "system")
#: fixtures that make any test using them a system test: Dask clusters, and archives big enough
#: that a subprocess can be signalled mid-run (test_faults)
SYSTEM_FIXTURES = {"dask_processes", "thread_client", "big_archives"}
#: system tests in modules whose bodies are edited elsewhere, by module and name
SYSTEM_TESTS = {"test_chain": {"test_no_heavy_imports"}}  # a fresh interpreter: what an import pulls in


#: warnings tolerated in modules whose bodies are edited on other branches, until they are fixed
#: there (then delete the entry): {(module, test name or None for all its tests): [filters]}
KNOWN_TEST_WARNINGS: dict[tuple[str, str | None], list[str]] = {
    # none left: test_fuzz_chain's devnull file and test_serve's pipes are closed on main now
}


def pytest_configure(config) -> None:
    # the generated kernels (composite/kernels.py) go to $HOME/.cache unless told otherwise; tests
    # that set HOME to a tmp folder would compile them again each time, so pin one folder for the
    # run (subprocesses and Dask workers inherit it). The default place is kept: across runs too.
    if not os.environ.get("IMALYS_STAC_KERNEL_CACHE"):
        os.environ["IMALYS_STAC_KERNEL_CACHE"] = str(Path.home() / ".cache" / "imalys_stac" / "kernels")


def _tier(item) -> str:
    declared = [t for t in TIERS if item.get_closest_marker(t)]
    if declared:
        return declared[0]
    if SYSTEM_FIXTURES & set(getattr(item, "fixturenames", ())):
        return "system"
    module = item.module.__name__.rpartition(".")[2] if getattr(item, "module", None) else ""
    if getattr(item, "originalname", item.name) in SYSTEM_TESTS.get(module, ()):
        return "system"
    return MODULE_TIERS.get(module, "integration")


def _cap_examples(item, cap: int) -> None:
    """Under the `dev` profile, at most ``cap`` examples also for a test that sets its own count.
    Hypothesis reads the settings off the wrapped test when it runs, so they are replaced there."""
    test = getattr(item, "function", None)
    current = getattr(test, "_hypothesis_internal_use_settings", None)
    if current is not None and current.max_examples > cap:
        test._hypothesis_internal_use_settings = settings(current, max_examples=cap)


def pytest_collection_modifyitems(config, items) -> None:
    dev = settings.get_profile("dev")
    for item in items:
        tier = _tier(item)
        if not item.get_closest_marker(tier):
            item.add_marker(getattr(pytest.mark, tier))
        if HYPOTHESIS_PROFILE == "dev":
            _cap_examples(item, dev.max_examples)
        module = item.module.__name__.rpartition(".")[2] if getattr(item, "module", None) else ""
        for key in ((module, None), (module, getattr(item, "originalname", item.name))):
            for known in KNOWN_TEST_WARNINGS.get(key, ()):
                item.add_marker(pytest.mark.filterwarnings(known))


# ------------------------------------------------------------- built once per run, shared
@contextmanager
def _locked(path: Path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def built_once(tmp_path_factory, name: str, build: Callable[[Path], Any]) -> Any:
    """``build(folder)`` run once per test run, its result (pickled) and folder shared by every
    xdist worker: the first worker builds under a lock, the others wait and read. Without xdist
    it is simply run once per session. The folder is read-only by convention."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder that holds every worker's basetemp
    folder = root / name
    done = root / f"{name}.pickle"
    with _locked(root / f"{name}.lock"):
        if done.exists():
            return pickle.loads(done.read_bytes())
        if folder.exists():  # a worker died half-way: build again
            import shutil

            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        result = build(folder)
        tmp = done.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(result))
        tmp.rename(done)
        return result


@pytest.fixture
def write_chain(tmp_path) -> Callable[..., Path]:
    """``write_chain(text, name="chain.txt")`` → the path of a chain file holding ``text``.

    ``text`` is written as given (``str`` as UTF-8 without changing line ends, ``bytes`` as is),
    so tests control BOMs, CRLF and encodings; it goes to the test's ``tmp_path``.
    """

    def write(text: str | bytes, name: str = "chain.txt") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, str):
            try:  # lone surrogates: as the bytes they stand for (a Latin-1 é), else as invalid UTF-8
                text = text.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                text = text.encode("utf-8", "surrogatepass")
        path.write_bytes(text)
        return path

    return write


@dataclass(frozen=True)
class SyntheticArchives:
    """What :func:`synthetic_archives` wrote: the folder, its archives and the scenes' truth."""

    folder: Path
    archives: tuple[Path, ...]
    scenes: tuple  # imalys_stac.synth.SyntheticScene, one per archive, in date order


#: dates and cloud fractions of the synthetic folder (the third is cloudy enough that quality = 0.7 rejects it)
SYNTHETIC_DATES = ((date(2022, 5, 15), 0.05), (date(2022, 5, 31), 0.2), (date(2022, 7, 2), 0.6))


def _write_synthetic_archives(folder: Path) -> SyntheticArchives:
    from imalys_stac.synth import Landscape, SceneSpec, write_landsat_archive

    land = Landscape(seed=5)
    scenes = tuple(
        write_landsat_archive(folder, SceneSpec(sensor="LC08", path=193, row=26, acquired=day, size=64,
                                                cloud_cover=cloud, seed=20 + i), landscape=land)
        for i, (day, cloud) in enumerate(SYNTHETIC_DATES)
    )
    archives = tuple(sorted(folder.glob("*.tar")))
    assert len(archives) == len(SYNTHETIC_DATES)
    return SyntheticArchives(folder, archives, scenes)


@pytest.fixture(scope="session")
def synthetic_archives(tmp_path_factory) -> SyntheticArchives:
    """Three small (64 × 64 px) synthetic Landsat 8 C2 L2 archives of WRS 193/026 in one folder,
    drawn from one landscape by :mod:`imalys_stac.synth`, written once per run. Read-only: copy
    before changing it."""
    return built_once(tmp_path_factory, "synthetic-archives", _write_synthetic_archives)


def _write_cluster_archives(folder: Path) -> Path:
    from imalys_stac.synth import Landscape, SceneSpec, write_landsat_archive

    land = Landscape(seed=21)
    for i in range(6):
        write_landsat_archive(folder, SceneSpec(path=193, row=26, acquired=date(2022, 6, 1) + timedelta(days=16 * i),
                                                size=768, cloud_cover=0.3, seed=300 + i), landscape=land, truth=False)
    return folder


@pytest.fixture(scope="session")
def cluster_archives(tmp_path_factory) -> Path:
    """Six 768 × 768 px synthetic Landsat 8 archives of WRS 193/026 (a reduce on a cluster takes
    seconds: long enough to kill a worker or a scheduler under it), written once per run. Read-only."""
    return built_once(tmp_path_factory, "cluster-archives", _write_cluster_archives)


@dataclass(frozen=True)
class FinishedRun:
    """What :func:`finished_workdir` left: the chain file, its working directory and the export."""

    chain: Path
    workdir: Path
    export: Path


@pytest.fixture(scope="session")
def finished_workdir(tmp_path_factory, synthetic_archives) -> FinishedRun:
    """The usual chain (:func:`bestof_chain`: import → compile → reduce bestof → export) run to the
    end, in-process, on :func:`synthetic_archives`, once per run. Read-only: a test that changes the
    working directory or runs the chain again copies it first (``shutil.copytree``)."""

    def run(folder: Path) -> FinishedRun:
        from imalys_stac.cli import main

        chain = bestof_chain(folder, synthetic_archives.folder, "finished")
        assert main(["run", str(chain)]) == 0
        return FinishedRun(chain, folder / "wd_finished", folder / "finished.tif")

    return built_once(tmp_path_factory, "finished-run", run)


@pytest.fixture(scope="session")
def real_scene() -> Path:
    """The folder of the real USGS Landsat 8 C2 L2 file set in ``tests/data/real`` (see its README
    for the licence); :func:`tests.realdata.tar_real_scene` tars it as USGS ships it."""
    from .realdata import PRODUCT_ID, REAL_DIR

    folder = REAL_DIR / PRODUCT_ID
    if not folder.is_dir():
        pytest.skip("the real scene is not in tests/data/real")
    return folder


# --------------------------------------------------------------------------- a real Dask cluster
class ProcessCluster:
    """A `dask scheduler` and `dask worker` processes on 127.0.0.1, as on a cluster: each in a
    session of its own (a worker's nanny and its child are stopped together), output in
    ``logs/<name>.log``. Started ready: every worker has joined the scheduler."""

    def __init__(self, folder: Path, workers: int = 2, threads: int = 1, memory_limit: str = "0", nanny: bool = False):
        import socket
        import subprocess
        import sys

        self._subprocess = subprocess
        dask_cli = str(Path(sys.executable).with_name("dask"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{port}"
        self.logs = Path(folder) / "cluster-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: list = []
        try:
            self.scheduler = self._start("scheduler", [dask_cli, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                                       "--no-dashboard"])
            #: the worker processes, named w0, w1, … on the scheduler (killing one kills that worker)
            self.workers = [self._start(f"worker{i}", [dask_cli, "worker", self.address, "--nthreads", str(threads),
                                                       "--nanny" if nanny else "--no-nanny", "--no-dashboard",
                                                       "--memory-limit", memory_limit, "--name", f"w{i}"])
                            for i in range(workers)]
            import distributed

            with distributed.Client(self.address, timeout="60s") as client:
                client.wait_for_workers(workers, timeout=120)
        except BaseException:
            self.close()
            raise

    def _start(self, name: str, cmd: list[str]):
        import os

        with open(self.logs / f"{name}.log", "w") as out:
            p = self._subprocess.Popen(cmd, stdout=out, stderr=self._subprocess.STDOUT, start_new_session=True,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.procs.append(p)
        return p

    def close(self) -> None:
        """Stop every process (workers first): SIGTERM to its session, SIGKILL after 20 s. Safe to
        call twice and on processes that are already dead."""
        import os
        import signal

        def signal_group(p, sig) -> None:
            try:
                os.killpg(p.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

        for p in reversed(self.procs):
            signal_group(p, signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=20)
            except self._subprocess.TimeoutExpired:
                signal_group(p, signal.SIGKILL)
                p.wait(timeout=20)
            signal_group(p, signal.SIGKILL)  # what a nanny left behind in its session


@pytest.fixture
def dask_processes(tmp_path):
    """``dask_processes(workers=2, threads=1, memory_limit="0", nanny=False)`` → a started
    :class:`ProcessCluster` (``.address`` for ``scheduler =``, ``.workers`` the worker processes).
    Every cluster a test starts is torn down after it, also when the test fails."""
    pytest.importorskip("distributed")
    started: list[ProcessCluster] = []

    def start(workers: int = 2, threads: int = 1, memory_limit: str = "0", nanny: bool = False) -> ProcessCluster:
        cluster = ProcessCluster(tmp_path / f"cluster{len(started)}", workers, threads, memory_limit, nanny)
        started.append(cluster)
        return cluster

    yield start
    for cluster in reversed(started):
        cluster.close()


# --------------------------------------------------------------------- the usual bestof chain
#: band and calibration lines of the chains below: Landsat's six reflective bands by file suffix
#: with the USGS Level-2 scale, or named bands calibrated from the archive's metadata
SIX_BANDS = "\tbands = _B2, _B3, _B4, _B5, _B6, _B7\n\tfactor = 2.75e-5\n\toffset = -0.2\n"
RED_NIR = "\tbands = red, nir08\n\tfactor = auto\n"


def bestof_chain(folder: Path, archives: Path, name: str, *, home: str = "", bands: str = RED_NIR) -> Path:
    """``<folder>/<name>.txt``: import every ``<archives>/*.tar`` → compile → reduce bestof
    (bands preserved) → export ``<folder>/<name>.tif``, in the working directory
    ``<folder>/wd_<name>``; ``home``: more lines of `home` (each ``\\t… \\n``)."""
    chain = Path(folder) / f"{name}.txt"
    chain.write_text(f"""IMALYS [{name}]
home
\tdirectory = {folder}/wd_{name}
\tclear = true
{home}import
\tselect = {archives}/*.tar
{bands}compile
\tsearch = LC08*
reduce
\tselect = compile
\texecute = bestof
\tpreserve = bands
export
\tselect = bestof
\ttarget = {folder}/{name}.tif
""")
    return chain
