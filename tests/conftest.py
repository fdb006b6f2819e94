"""Shared fixtures: writing chain files, a small synthetic Landsat archive folder, the real scene.

Fixtures defined in a test module with the same name win over these (pytest's rule), so the
older modules' own fixtures are untouched.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Callable

import pytest

DATA = Path(__file__).parent / "data"


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


@pytest.fixture(scope="session")
def synthetic_archives(tmp_path_factory) -> SyntheticArchives:
    """Three small (64 × 64 px) synthetic Landsat 8 C2 L2 archives of WRS 193/026 in one folder,
    drawn from one landscape by :mod:`imalys_stac.synth`. Read-only: copy before changing it."""
    from imalys_stac.synth import Landscape, SceneSpec, write_landsat_archive

    folder = tmp_path_factory.mktemp("synthetic-archives")
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
