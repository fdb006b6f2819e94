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
from datetime import date, timedelta
from pathlib import Path

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
