"""A real STAC API server for tests: `rustac serve` (PyPI rustac, in-memory backend) on 127.0.0.1."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_collection(collection_folder: Path) -> Iterator[str]:
    """Serve `collection_folder/collection.json` with its items; yield the API's URL."""
    exe = Path(sys.executable).with_name("rustac")
    if not exe.exists():
        exe = Path(shutil.which("rustac") or "rustac")
    port = free_port()
    # rustac resolves the collection's item links against its working directory: run it there
    proc = subprocess.Popen([str(exe), "serve", "collection.json", "--load-collection-items",
                             "-a", f"127.0.0.1:{port}"], cwd=collection_folder,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            if proc.poll() is not None:
                raise RuntimeError(f"rustac serve exited: {proc.stdout.read().decode()}")
            try:
                urllib.request.urlopen(url, timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
