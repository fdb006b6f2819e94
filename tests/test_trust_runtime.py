"""Issue 20, runtime: scheduler addresses that are not a Dask scheduler, a cluster that dies
under a run, corrupt and contradictory archives, full disks, empty composites, huge grids.

Tests that start servers, clusters or subprocesses are marked `system`; the rest are quick."""
from __future__ import annotations

import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from imalys_stac.errors import ResourceError
from imalys_stac.runtime.cluster import check_scheduler_address

EXE = str(Path(sys.executable).with_name("imalys-stac"))


# ------------------------------------------------------------------ scheduler addresses (item 1)
class _OneShotServer:
    """A loopback TCP server that treats each connection with `behaviour(conn)` (bounded: it
    stops with the test)."""

    def __init__(self, behaviour):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.behaviour = behaviour
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    self.behaviour(conn, self.stop)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def server():
    started = []

    def start(behaviour):
        s = _OneShotServer(behaviour)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


def _ssh(conn, stop):  # speaks first, as sshd does
    conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
    stop.wait(2)


def _http(conn, stop):  # waits for a request, as a web server (a Dask dashboard) does
    data = b""
    while b"\r\n\r\n" not in data and not stop.is_set():
        chunk = conn.recv(1024)
        if not chunk:
            return
        data += chunk
    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")


def _silent(conn, stop):
    stop.wait(5)


def _dask_like(conn, stop):  # a Dask scheduler's greeting: an 8-byte length, then that many bytes
    conn.sendall(struct.pack("<Q", 150) + bytes(150))
    stop.wait(2)


@pytest.mark.system
def test_a_service_that_speaks_first_is_named_not_read_as_a_huge_message(server):
    srv = server(_ssh)
    with pytest.raises(ResourceError) as err:
        check_scheduler_address(f"tcp://127.0.0.1:{srv.port}", answer_timeout=2)
    msg = str(err.value)
    assert f"127.0.0.1:{srv.port} is not a Dask scheduler; an SSH server answered 'SSH-2.0-OpenSSH_9.2p1" in msg
    assert "8786" in err.value.hint


@pytest.mark.system
def test_a_web_server_is_named_instead_of_a_hang(server):
    srv = server(_http)
    t0 = time.monotonic()
    with pytest.raises(ResourceError) as err:
        check_scheduler_address(f"127.0.0.1:{srv.port}", answer_timeout=1)
    assert "is not a Dask scheduler; an HTTP server" in str(err.value) and "'HTTP/1.1 404 Not Found'" in str(err.value)
    assert time.monotonic() - t0 < 30  # bounded (the limit is generous: a loaded machine)


@pytest.mark.system
def test_a_silent_service_and_a_closed_port_are_named(server):
    srv = server(_silent)
    with pytest.raises(ResourceError, match="accepted the connection but sent no Dask greeting within 1 s"):
        check_scheduler_address(f"tcp://127.0.0.1:{srv.port}", answer_timeout=1)
    port = srv.port
    srv.close()
    with pytest.raises(ResourceError, match=rf"nothing listens on 127.0.0.1:{port} \(connection refused\)"):
        check_scheduler_address(f"tcp://127.0.0.1:{port}")


@pytest.mark.system
def test_a_dask_greeting_passes_the_check(server):
    srv = server(_dask_like)
    check_scheduler_address(f"tcp://127.0.0.1:{srv.port}", answer_timeout=5)  # no error
    check_scheduler_address("tls://127.0.0.1:1")  # other protocols: distributed checks them itself


def test_a_port_that_is_no_number_is_refused():
    with pytest.raises(ResourceError, match="the port 'http' is not a number"):
        check_scheduler_address("tcp://somehost:http")


@pytest.mark.system
def test_a_run_with_an_ssh_port_as_scheduler_is_a_user_error_not_a_memory_error(server):
    from imalys_stac.runtime.cluster import ClusterSpec, dask_runtime

    srv = server(_ssh)
    with pytest.raises(ResourceError, match="an SSH server answered"):
        with dask_runtime(ClusterSpec(scheduler=f"tcp://127.0.0.1:{srv.port}")):
            pass


# ----------------------------------------------------- a cluster that dies under a run (item 2)
# cluster_archives: six 768² archives, from conftest (built once per run)


def _run_and_kill_at_reduce(chain: Path, victims, env: dict | None = None) -> tuple[int, str, bool]:
    """Run the CLI on `chain`; once it prints the reduce step, SIGKILL `victims` (processes).
    Returns (exit code, stderr, whether they were killed while the run was still going)."""
    proc = subprocess.Popen([EXE, "run", str(chain)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "IMALYS_NO_MALLOC_TUNING": "1", **(env or {})})
    lines: list[str] = []
    killed = False
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        if not killed and line.startswith("── reduce"):
            time.sleep(0.5)  # its tasks are on the workers
            killed = proc.poll() is None
            for p in victims:
                os.kill(p.pid, signal.SIGKILL)
    proc.wait(timeout=300)
    assert proc.stdout is not None
    proc.stdout.close()
    proc.stderr.close()
    return proc.returncode, "".join(lines), killed


@pytest.mark.system
@pytest.mark.timeout(600)
def test_a_scheduler_killed_during_reduce_is_one_line_without_a_traceback(tmp_path, cluster_archives, dask_processes):
    from .conftest import SIX_BANDS, bestof_chain

    cluster = dask_processes(workers=2)
    chain = bestof_chain(tmp_path, cluster_archives, "lost", home=f"\tscheduler = {cluster.address}\n", bands=SIX_BANDS)
    rc, err, killed = _run_and_kill_at_reduce(chain, [cluster.scheduler])
    assert killed, err
    assert rc == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: lost.txt:") and "reduce" in last and "Dask scheduler" in last, err
    assert "Traceback" not in err and "asyncio" not in err and "distributed." not in err, err
    assert "bestof: 100 %" not in err  # the reduce step did not finish


@pytest.mark.system
@pytest.mark.timeout(600)
def test_losing_every_worker_keeps_distributed_off_the_terminal_and_reports_no_false_100(tmp_path, cluster_archives,
                                                                                          dask_processes):
    from .conftest import SIX_BANDS, bestof_chain

    cluster = dask_processes(workers=2)
    chain = bestof_chain(tmp_path, cluster_archives, "orphan", home=f"\tscheduler = {cluster.address}\n", bands=SIX_BANDS)
    rc, err, killed = _run_and_kill_at_reduce(chain, cluster.workers, env={"IMALYS_NO_WORKERS_TIMEOUT": "5"})
    assert killed, err
    assert rc == 1, err
    assert err.strip().splitlines()[-1].startswith("error: orphan.txt:") and "no worker for 5 s" in err, err
    assert "distributed." not in err and "Traceback" not in err, err  # distributed's lines are in the log file
    assert "bestof: 100 %" not in err  # the reduce step did not finish
    assert len(err.strip().splitlines()) < 30, err
    logs = list((tmp_path / "wd_orphan").glob("imalys-*.log"))
    assert logs and "distributed" in logs[0].read_text(encoding="utf-8")


# ------------------------------------------------------- corrupt and contradictory archives (item 3)
def _archive_copy(src: Path, dst: Path, edit=None) -> Path:
    """A copy of a tar archive, with `edit(name, bytes) -> bytes` applied to its members."""
    import io
    import tarfile

    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read()
            if edit is not None:
                data = edit(m.name, data)
            info = tarfile.TarInfo(m.name)
            info.size = len(data)
            info.mtime = m.mtime
            tout.addfile(info, io.BytesIO(data))
    return dst


def _corrupt_first_tile(archive: Path, suffix: str) -> str:
    """Overwrite the start of the first compressed tile of member `*_<suffix>.TIF` in place;
    returns the member's name."""
    import tarfile

    import rasterio

    with tarfile.open(archive) as t:
        m = next(x for x in t.getmembers() if x.name.endswith(f"_{suffix}.TIF"))
    with rasterio.open(f"/vsitar/{archive}/{m.name}") as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
        size = int(ds.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1))
    with open(archive, "r+b") as fh:
        fh.seek(m.offset_data + offset)
        fh.write(b"\xff" * min(size, 64))
    return m.name


@pytest.mark.parametrize("suffix", ["SR_B4", "QA_PIXEL"])
def test_a_member_with_corrupt_tiles_is_named_with_its_archive(tmp_path, synthetic_archives, suffix):
    import shutil

    from imalys_stac.chain import ChainError, load_chain
    from imalys_stac.commands import run_chain

    from .conftest import bestof_chain

    folder = tmp_path / "archives"
    shutil.copytree(synthetic_archives.folder, folder)
    victim = sorted(folder.glob("*.tar"))[0]
    member = _corrupt_first_tile(victim, suffix)
    chain = bestof_chain(tmp_path, folder, "corrupt", bands="\tbands = red, nir08, green\n\tfactor = auto\n")
    with pytest.raises(ChainError) as err:
        run_chain(load_chain(chain))
    msg = str(err.value)
    assert f"{victim}: member {member} has damaged pixel data" in msg, msg
    assert "Read failed" not in msg and "See previous exception" not in msg
    assert "download the archive again" in msg


def test_a_gzip_file_named_tar_is_called_gzip_with_the_fix(tmp_path, synthetic_archives):
    import gzip

    from imalys_stac.archives import ArchiveError
    from imalys_stac.registry import open_archive

    src = synthetic_archives.archives[0]
    fake = tmp_path / src.name
    fake.write_bytes(gzip.compress(src.read_bytes(), compresslevel=1))
    with pytest.raises(ArchiveError) as err:
        open_archive(fake)
    msg = str(err.value)
    assert "truncated" not in msg
    assert f"the file is gzip-compressed but named .tar (USGS ships plain tars); rename it to {src.name}.gz" in msg
    renamed = fake.rename(tmp_path / f"{src.name}.gz")  # the suggested fix works
    assert open_archive(renamed).product_id == src.name[: -len(".tar")]


def test_an_archive_named_for_another_sensor_is_refused(tmp_path, synthetic_archives):
    import shutil

    from imalys_stac.archives import ArchiveError
    from imalys_stac.registry import open_archive

    src = synthetic_archives.archives[0]
    fake = tmp_path / ("LT05" + src.name[4:])
    shutil.copyfile(src, fake)
    with pytest.raises(ArchiveError, match=r"named as a LT05 \(landsat-5\) archive but its members are LC08 \(landsat-8\)"):
        open_archive(fake)


@pytest.mark.parametrize("old, new, what", [
    ('SPACECRAFT_ID = "LANDSAT_8"', 'SPACECRAFT_ID = "LANDSAT_5"', "SPACECRAFT_ID = LANDSAT_5"),
    ('SENSOR_ID = "OLI_TIRS"', 'SENSOR_ID = "TM"', "SENSOR_ID = TM"),
])
def test_an_mtl_that_names_another_sensor_is_refused(tmp_path, synthetic_archives, old, new, what):
    from imalys_stac.archives import ArchiveError
    from imalys_stac.registry import open_archive

    src = synthetic_archives.archives[0]

    def edit(name: str, data: bytes) -> bytes:
        if name.endswith("_MTL.txt"):
            assert old.encode() in data
            return data.replace(old.encode(), new.encode())
        return data

    fake = _archive_copy(src, tmp_path / src.name, edit)
    with pytest.raises(ArchiveError, match=f"the MTL says {what}, the members are LC08"):
        open_archive(fake)
    (tmp_path / "unedited").mkdir()
    assert open_archive(_archive_copy(src, tmp_path / "unedited" / src.name)).sensor == "LC08"  # the copy itself is fine


# ----------------------------------------------------------------- a full disk in reduce (item 4)
@pytest.mark.system
@pytest.mark.timeout(600)
@pytest.mark.parametrize("size, expected", [
    # reduce's 768² × 6 float COG needs ~19 MB of temporaries by the up-front estimate (item 7)...
    ("6m", r"reduce: bestof would be 768 × 768 pixels \(5\.9e\+05 per band\) × 6 band\(s\) at 30 m of EPSG:32632; "
           r"writing it needs about 18\.9 MB of temporary space in {wd}, which has [0-9.]+ MB free — "
           r"choose a larger pixel size or a smaller frame, or free space \(or move the working directory\)"),
    # ...and enough for it, but the disk fills while the reduce writes (another process's file)
    ("21m", r"reduce: cannot write in {wd}: No space left on device — free some space or choose another folder"),
])
def test_a_disk_that_fills_during_reduce_is_called_full_with_the_folder_and_the_fix(tmp_path, cluster_archives, size,
                                                                                    expected):
    import re
    import shlex
    import shutil

    from .conftest import SIX_BANDS, bestof_chain

    unshare = shutil.which("unshare")
    if not unshare or subprocess.run([unshare, "--user", "--map-root-user", "--mount", "true"]).returncode != 0:
        pytest.skip("no unprivileged mount namespace on this machine")
    small = tmp_path / "small"
    small.mkdir()
    chain = bestof_chain(tmp_path, cluster_archives, "full", bands=SIX_BANDS)
    # the working directory on a small file system: import and compile fit, reduce does not
    text = chain.read_text().replace(f"directory = {tmp_path}/wd_full", f"directory = {small}/wd")
    chain.write_text(text.replace("\tclear = true\n", f"\tlog = {tmp_path}/logs\n"))
    cmd = shlex.join([EXE, "run", str(chain)])
    # once the reduce's product is being written (`.bestof.tmp-…`), another file takes the rest of
    # the disk: the writer's up-front estimate passed, and the disk fills under it all the same
    filler = (f"while ! ls -A {small}/wd 2>/dev/null | grep -q '^[.]bestof[.]tmp-'; do sleep 0.005; done; "
              f"cat /dev/zero > {small}/other-file 2>/dev/null")
    res = subprocess.run([unshare, "--user", "--map-root-user", "--mount", "sh", "-c",
                          f"mount -t tmpfs -o size={size} tmpfs {small} || exit 9; ({filler}) >/dev/null 2>&1 & "
                          f"other=$!; {cmd}; rc=$?; kill $other 2>/dev/null; ls -A {small}/wd; exit $rc"],
                         capture_output=True, text=True, timeout=500, env={**os.environ, "IMALYS_NO_MALLOC_TUNING": "1"})
    assert res.returncode == 1, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert re.fullmatch("error: full\\.txt:12: " + expected.format(wd=re.escape(f"{small}/wd")), last), res.stderr
    assert "bestof" not in res.stdout.split() and ".tmp-" not in res.stdout  # nothing half-written


# ------------------------------------------------------------- an all-nodata composite (item 5)
def test_a_composite_without_any_valid_pixel_is_a_warning_naming_why(tmp_path, capsys):
    import numpy as np
    import rasterio

    from imalys_stac.chain import load_chain
    from imalys_stac.commands import run_chain
    from imalys_stac.synth import Landscape, SceneSpec, write_landsat_archive

    folder = tmp_path / "archives"
    write_landsat_archive(folder, SceneSpec(path=193, row=26, acquired=date(2022, 6, 1), size=64, cloud_cover=1.0, seed=7),
                          landscape=Landscape(seed=5), truth=False)
    chain = tmp_path / "empty.txt"
    chain.write_text(f"IMALYS [empty]\nhome\n\tdirectory = {tmp_path}/wd\nimport\n\tselect = {folder}/*.tar\n"
                     "\tbands = red, nir08\n\tfactor = auto\n\tquality = 0\ncompile\n\tsearch = LC08*\n"
                     "reduce\n\tselect = compile\n\texecute = bestof\n\tpreserve = bands\n")
    ctx = run_chain(load_chain(chain))
    err = capsys.readouterr().err
    with rasterio.open(tmp_path / "wd" / "bestof" / "bestof.tif") as ds:
        assert not np.isfinite(ds.read()).any()  # the premise: nothing valid (checked independently)
    assert "warning:    bestof: the result has no valid pixel (all nodata): the only layer of compile has no clear " \
           "pixel in the frame (quality 0)" in err, err
    assert ctx.runlog.warnings >= 1


def test_a_composite_with_valid_pixels_gives_no_such_warning(tmp_path, capsys, synthetic_archives):
    from imalys_stac.chain import load_chain
    from imalys_stac.commands import run_chain

    from .conftest import bestof_chain

    run_chain(load_chain(bestof_chain(tmp_path, synthetic_archives.folder, "fine")))
    assert "no valid pixel" not in capsys.readouterr().err


# ------------------------------------------------ only user errors become located errors (item 8)
def test_a_bug_in_cube_building_is_not_reported_as_the_users_mistake(tmp_path, synthetic_archives, monkeypatch):
    from imalys_stac.chain import ChainError, load_chain
    from imalys_stac.commands import reduce as reduce_command
    from imalys_stac.commands import run_chain

    from .conftest import bestof_chain

    def broken(*args, **kwargs):
        raise KeyError("quality")  # what a programming error looks like

    monkeypatch.setattr(reduce_command, "cube_of", broken)
    with pytest.raises(KeyError) as err:
        run_chain(load_chain(bestof_chain(tmp_path, synthetic_archives.folder, "bug")))
    assert not isinstance(err.value, ChainError)


def test_a_band_number_that_does_not_fit_is_a_user_error_naming_the_parameter():
    import numpy as np
    import xarray as xr

    from imalys_stac.composite import reduce_stack
    from imalys_stac.errors import InputError

    cube = xr.DataArray(np.ones((2, 2, 4, 4), "float32"), dims=("time", "band", "y", "x"),
                        coords={"quality": ("time", [0.5, 0.6])})
    with pytest.raises(InputError, match=r"'red' must be a band number \(1-based, 1..2\), got 7") as err:
        reduce_stack(cube, "ndvi", red=7, nir=1)
    assert err.value.parameter == "red"
    with pytest.raises(InputError, match="unknown reduce method 'nope'"):
        reduce_stack(cube, "nope")


# ------------------------------------------------------- grids checked against the disk (item 7)
def test_a_huge_result_is_refused_before_computing_with_the_pixel_size(tmp_path):
    from imalys_stac.write.raster import check_room_for

    # 4·10¹⁰ pixels per band, 3 float32 bands: 480 GB uncompressed, 640 GB with its overviews
    with pytest.raises(ResourceError) as err:
        check_room_for((3, 200_000, 200_000), "float32", tmp_path, what="bestof", pixel="30 m of EPSG:32632")
    msg = str(err.value)
    assert msg.startswith("bestof would be 200,000 × 200,000 pixels (4e+10 per band) × 3 band(s) at 30 m of EPSG:32632; "
                          "writing it needs about 640.0 GB of temporary space in ")
    assert "pixel size" in err.value.hint
    check_room_for((3, 100, 100), "float32", tmp_path, what="bestof", pixel="30 m")  # fits: no error


def test_reduce_checks_the_free_disk_before_computing(tmp_path, synthetic_archives, monkeypatch):
    from imalys_stac.chain import ChainError, load_chain
    from imalys_stac.commands import run_chain
    from imalys_stac.write import raster

    from .conftest import bestof_chain

    monkeypatch.setattr(raster, "free_bytes", lambda folder: 1000)
    computed = []
    monkeypatch.setattr("imalys_stac.commands.reduce.write_cog", lambda *a, **k: computed.append(a))
    with pytest.raises(ChainError) as err:
        run_chain(load_chain(bestof_chain(tmp_path, synthetic_archives.folder, "room")))
    msg = str(err.value)
    assert "reduce: bestof would be 64 × 64 pixels (4.1e+03 per band) × 2 band(s) at 30 m of EPSG:32632" in msg, msg
    assert "which has 1.0 kB free" in msg and computed == []


# ------------------------------------------------------------------- no import cycles (issue 18)
def _imports(package_dir: Path, package: str) -> dict[str, set[str]]:
    """module → the package's modules it imports, function-level imports included."""
    import ast

    graph: dict[str, set[str]] = {}
    for path in package_dir.rglob("*.py"):
        rel = path.relative_to(package_dir.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        pkg = name if rel.name == "__init__" else name.rpartition(".")[0]
        out = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.startswith(package))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")
                    base = base[: len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if mod.startswith(package):
                    out.add(mod)
                    out.update(f"{mod}.{a.name}" for a in node.names)
    return {k: {m for m in v if m in graph and m != k} for k, v in graph.items()}


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        for n in graph.get(m, ()):
            if n == goal:
                return True
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return False


def test_the_runtime_and_the_archives_have_no_import_cycle():
    import imalys_stac

    graph = _imports(Path(imalys_stac.__file__).parent, "imalys_stac")
    for module in ("imalys_stac.runtime.cluster", "imalys_stac.runtime.plugins", "imalys_stac.runtime.progress",
                   "imalys_stac.runtime.names", "imalys_stac.runtime.client", "imalys_stac.archives",
                   "imalys_stac.archives.container", "imalys_stac.archives.bands"):
        assert not _reaches(graph, module, module), f"{module} imports itself through others"
    assert not _reaches(graph, "imalys_stac.archives", "imalys_stac.registry")


@pytest.mark.system
@pytest.mark.timeout(600)
def test_killing_every_worker_of_a_local_cluster_keeps_the_terminal_readable(tmp_path, cluster_archives):
    """`scheduler = processes`: the nannies live in the run's process and restart the workers;
    killing them twice floods nothing onto the terminal (the issue counted 186 lines)."""
    import psutil

    from .conftest import SIX_BANDS, bestof_chain

    chain = bestof_chain(tmp_path, cluster_archives, "local", home="\tscheduler = processes\n\tworkers = 2\n",
                         bands=SIX_BANDS)
    proc = subprocess.Popen([EXE, "run", str(chain)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "IMALYS_NO_MALLOC_TUNING": "1", "IMALYS_NO_WORKERS_TIMEOUT": "5"})
    killed: list[int] = []

    def kill_workers() -> None:
        for _ in range(2):  # the workers, then the ones the nannies started again
            time.sleep(1.5)
            try:
                kids = psutil.Process(proc.pid).children(recursive=True)
            except psutil.Error:
                return
            for p in kids:
                try:
                    cmd = " ".join(p.cmdline())
                    if "spawn_main" in cmd and "resource_tracker" not in cmd:
                        p.kill()
                        killed.append(p.pid)
                except psutil.Error:
                    pass

    lines: list[str] = []
    assert proc.stderr is not None and proc.stdout is not None
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("── reduce") and not killed:
            threading.Thread(target=kill_workers, daemon=True).start()
    proc.wait(timeout=300)
    proc.stdout.close()
    proc.stderr.close()
    err = "".join(lines)
    assert killed, err
    assert "distributed." not in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) < 40, err
    if proc.returncode != 0:  # (else the restarted workers finished the work)
        assert err.strip().splitlines()[-1].startswith("error: local.txt:"), err
        assert "bestof: 100 %" not in err


# ------------------------------------------------- progress never reports work not done (item 2)
def test_a_step_that_fails_never_logs_100_percent(monkeypatch):
    import dask.array as da

    from imalys_stac.runtime import progress

    class Lines(logging.Handler):
        def __init__(self):
            super().__init__(logging.DEBUG)
            self.lines: list[str] = []

        def emit(self, record):
            self.lines.append(record.getMessage().strip())

    monkeypatch.setenv("IMALYS_PROGRESS_INTERVAL", "0")
    monkeypatch.setattr(progress, "progress_enabled", lambda: False)
    lines = Lines()
    logger = logging.getLogger("imalys_stac.progress")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(lines)

    def boom(block):
        raise OSError("the disk went away")

    try:
        with pytest.raises(OSError):
            with progress.dask_progress("bestof"):
                da.ones((4, 4), chunks=2).map_blocks(boom, meta=np.empty((0, 0))).compute(scheduler="sync")
        with progress.dask_progress("median"):
            da.ones((4, 4), chunks=2).sum().compute(scheduler="sync")
    finally:
        logger.removeHandler(lines)
        logger.setLevel(old_level)
    assert not any(line.startswith("bestof: 100 %") for line in lines.lines), lines.lines
    assert any(line.startswith("bestof: stopped at") for line in lines.lines), lines.lines
    assert any(line.startswith("median: 100 %") for line in lines.lines), lines.lines  # a step that ends does say so


# ------------------------------------------------------------- quicklooks from overviews (item 6)
def test_a_png_of_a_cog_opened_lazily_is_read_from_its_overviews_without_computing(tmp_path):
    import dask
    import rioxarray
    import xarray as xr
    from dask.callbacks import Callback
    from PIL import Image

    from imalys_stac.write import write_cog, write_quicklook

    rng = np.random.default_rng(3)
    data = rng.random((3, 2100, 2000), dtype=np.float32)
    da = xr.DataArray(data, dims=("band", "y", "x"),
                      coords={"band": ["nir08", "red", "green"], "y": 5e6 - 30.0 * np.arange(2100),
                              "x": 4e5 + 30.0 * np.arange(2000)}).rio.write_crs(32632)
    tif = write_cog(da, tmp_path / "big.tif")

    class Count(Callback):
        def __init__(self):
            super().__init__()
            self.tasks = 0

        def _posttask(self, *args):
            self.tasks += 1

    lazy = rioxarray.open_rasterio(tif, chunks={"band": -1, "y": 512, "x": 512}, masked=True)
    lazy = lazy.assign_coords(band=["nir08", "red", "green"])
    with dask.config.set(scheduler="sync"), Count() as counted:
        write_quicklook(lazy, tmp_path / "lazy.png", max_size=256)
    assert counted.tasks == 0  # nothing computed at full resolution: the overviews were read
    write_quicklook(str(tif), tmp_path / "file.png", max_size=256)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "lazy.png")), np.asarray(Image.open(tmp_path / "file.png")))
    with dask.config.set(scheduler="sync"), Count() as counted:  # a changed array is computed (block means)
        write_quicklook(lazy * 2, tmp_path / "changed.png", max_size=256)
    assert counted.tasks > 0


def test_a_worker_memory_below_the_minimum_is_stated_in_the_users_unit_and_in_mib():
    from imalys_stac.runtime.cluster import MIN_WORKER_MEMORY, ClusterSpec

    with pytest.raises(ResourceError) as err:
        ClusterSpec(scheduler="processes", memory="260MB").memory_bytes()
    assert "memory = 260MB per worker is too small (260 MB = 248 MiB): a Dask worker needs at least 256 MiB (268 MB)" \
        in str(err.value)
    assert ClusterSpec(scheduler="processes", memory="270MB").memory_bytes() == 270 * 10**6  # the hint's value passes
    assert ClusterSpec(scheduler="processes", memory="256MiB").memory_bytes() == MIN_WORKER_MEMORY
