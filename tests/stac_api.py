"""A real STAC API server for tests: `rustac serve` (PyPI rustac, in-memory backend) on 127.0.0.1."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
    # An API's item URL is no base for relative hrefs (rustac passes them through unchanged): the
    # items go to rustac with their hrefs made absolute, as `imalys-stac serve --api` does.
    import json
    import tempfile

    from imalys_stac.stac import read_item

    tmp = Path(tempfile.mkdtemp(prefix="stac-api-"))
    col = json.loads((collection_folder / "collection.json").read_text())
    features = [read_item(collection_folder / l["href"]).to_dict(include_self_link=False, transform_hrefs=False)
                for l in col["links"] if l["rel"] == "item"]
    for f in features:
        f["links"] = []
    col["links"] = [l for l in col["links"] if "://" in l["href"]]
    (tmp / "collection.json").write_text(json.dumps(col))
    (tmp / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    proc = subprocess.Popen([str(exe), "serve", "collection.json", "items.json",
                             "-a", f"127.0.0.1:{port}"], cwd=tmp,
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
        shutil.rmtree(tmp, ignore_errors=True)
