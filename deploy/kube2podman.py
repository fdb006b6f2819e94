"""Turn the containers of deploy/kubernetes/ into `podman run` options, for deploy/test-image.sh.

Run inside the image (it has PyYAML): ``python kube2podman.py MANIFEST...`` prints, for every
container of every pod (Deployment, Job, DaskJob job/scheduler/worker), a shell function
``c_<resource>_<container>`` that sets OPTS (user, environment, volume mounts, memory limit) and
ARGS (the container's args, with Kubernetes' ``$(VAR)`` references as shell expansions of the
same variables). Volumes map to folders: claim ``imalys-<name>`` to ``$VOL_<name>``, ConfigMap
``<name>`` to ``$CONFIGMAP_<name>`` (the caller sets them).
"""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import yaml


def pods(doc: dict) -> list[tuple[str, dict]]:
    kind, name = doc.get("kind"), doc["metadata"]["name"]
    if kind in ("Deployment", "Job"):
        return [(name, doc["spec"]["template"]["spec"])]
    if kind == "DaskJob":
        cluster = doc["spec"]["cluster"]["spec"]
        return [(name, doc["spec"]["job"]["spec"]), (name, cluster["scheduler"]["spec"]), (name, cluster["worker"]["spec"])]
    if kind == "DaskCluster":
        return [(name, doc["spec"]["scheduler"]["spec"]), (name, doc["spec"]["worker"]["spec"])]
    return []


def memory(quantity: str) -> str:
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)?", str(quantity))
    if not m:
        raise SystemExit(f"kube2podman: memory {quantity!r} not understood")
    return m.group(1) + {"Ki": "k", "Mi": "m", "Gi": "g", "Ti": "t", None: "b"}[m.group(2)]


def shell_word(text: str) -> str:
    """A double-quoted shell word in which Kubernetes' $(VAR) becomes ${VAR}."""
    out = re.sub(r'(["\\`$])', r"\\\1", str(text))
    return '"' + re.sub(r"\\\$\(([A-Za-z_][A-Za-z0-9_]*)\)", r"${\1}", out) + '"'


def variable(prefix: str, name: str) -> str:
    return "${%s_%s}" % (prefix, re.sub(r"\W", "_", name))


def container_function(resource: str, spec: dict, c: dict) -> str:
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    opts: list[str] = []
    user = (c.get("securityContext") or {}).get("runAsUser", (spec.get("securityContext") or {}).get("runAsUser"))
    group = (spec.get("securityContext") or {}).get("runAsGroup", user)
    if user is not None:
        opts += ["--user", shlex.quote(f"{user}:{group}")]
    for e in c.get("env", []):
        if "value" in e:
            opts += ["-e", shell_word(f"{e['name']}={e['value']}")]
    for m in c.get("volumeMounts", []):
        v = volumes[m["name"]]
        ro = m.get("readOnly", False)
        if "persistentVolumeClaim" in v:
            claim = v["persistentVolumeClaim"]["claimName"]
            ro = ro or v["persistentVolumeClaim"].get("readOnly", False)
            source = variable("VOL", claim.removeprefix("imalys-"))
        elif "configMap" in v:
            source = variable("CONFIGMAP", v["configMap"]["name"])
        else:
            raise SystemExit(f"kube2podman: volume {m['name']} of {resource} is neither a claim nor a ConfigMap")
        opts += ["-v", f'"{source}:{m["mountPath"]}{":ro" if ro else ""}"']
    limit = ((c.get("resources") or {}).get("limits") or {}).get("memory")
    if limit:
        opts += ["--memory", memory(limit)]
    name = re.sub(r"\W", "_", f"c_{resource}_{c['name']}")
    args = " ".join(shell_word(a) for a in [*c.get("command", []), *c.get("args", [])])
    return f"{name}() {{\n    OPTS=({' '.join(opts)})\n    ARGS=({args})\n}}\n"


def main(files: list[str]) -> None:
    for f in files:
        for doc in yaml.safe_load_all(Path(f).read_text(encoding="utf-8")):
            if not doc or "metadata" not in doc:  # kustomization.yaml
                continue
            for resource, spec in pods(doc):
                for c in [*spec.get("initContainers", []), *spec["containers"]]:
                    sys.stdout.write(container_function(resource, spec, c))


if __name__ == "__main__":
    main(sys.argv[1:])
