"""The cluster configs: Ray's own validation of ray_cluster.yaml, the KubeRay manifests' required
fields, the container image's pins, and the rule that no config exposes the dashboard.

No cluster is started and no cloud is contacted: the launcher config goes through the same
`prepare_config` + `validate_config` (ray-schema.json) that `ray up` runs before touching AWS.
"""
from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_YAML = REPO_ROOT / "ray_cluster.yaml"
RAYCLUSTER = REPO_ROOT / "cluster" / "kuberay" / "raycluster.yaml"
RAYJOB = REPO_ROOT / "cluster" / "kuberay" / "rayjob.yaml"
DOCKERFILE = REPO_ROOT / "cluster" / "Dockerfile"
LOCAL_SH = REPO_ROOT / "cluster" / "local.sh"
IMAGE = "ghcr.io/your-org/meta-dist:0.1.0"


def _load(path: Path) -> dict:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert len(docs) == 1, f"{path} should hold one document"
    return docs[0]


def _walk(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


# ---------------------------------------------------------------------------- ray_cluster.yaml


def test_ray_cluster_yaml_passes_rays_validation() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load(CLUSTER_YAML.read_text())
    validate_config(copy.deepcopy(raw))  # the schema check as written
    validate_config(prepare_config(copy.deepcopy(raw)))  # after defaults, as `ray up` does


def test_ray_cluster_yaml_node_types_and_provider() -> None:
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    assert config["provider"]["type"] == "aws"
    assert config["provider"]["region"] == "us-west-2"
    assert config["provider"]["cache_stopped_nodes"] is True
    assert config["auth"]["ssh_user"] == "ubuntu"
    types = config["available_node_types"]
    assert config["head_node_type"] == "head"
    assert types["head"]["node_config"]["InstanceType"] == "m5.2xlarge"
    assert types["head"]["resources"] == {}
    cpu, gpu = types["cpu_worker"], types["gpu_worker"]
    assert cpu["node_config"]["InstanceType"] == "c5.4xlarge"
    assert (cpu["min_workers"], cpu["max_workers"]) == (0, 8)
    assert gpu["node_config"]["InstanceType"] == "g5.xlarge"
    assert (gpu["min_workers"], gpu["max_workers"]) == (0, 4)
    assert gpu["resources"]["GPU"] == 1
    assert config["max_workers"] >= cpu["max_workers"] + gpu["max_workers"]
    for key in ("upscaling_speed", "idle_timeout_minutes"):
        assert config[key] > 0


def test_ray_cluster_yaml_installs_meta_dist_and_binds_dashboard_to_loopback() -> None:
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    assert config["file_mounts"] == {"~/meta-dist": "."}
    setup = "\n".join(config["setup_commands"])
    for pin in ('"torch==2.14.1"', '"torchvision==0.29.1"', '"ray[default]==2.58.*"'):
        assert pin in setup
    assert setup.index("torch==2.14.1") < setup.index("pip install -e ~/meta-dist")
    head = " ".join(config["head_start_ray_commands"])
    assert "ray start --head --port=6379" in head
    assert "--dashboard-host=127.0.0.1" in head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    workers = " ".join(config["worker_start_ray_commands"])
    assert "--address=$RAY_HEAD_IP:6379" in workers
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        assert commands[0] == "ray stop"


# ---------------------------------------------------------------------------- KubeRay


def _check_ray_cluster_spec(spec: dict) -> None:
    assert spec["rayVersion"].startswith("2.58.")
    assert spec["authOptions"]["mode"] == "token"
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    assert head.get("enableIngress", False) is False
    head_containers = head["template"]["spec"]["containers"]
    assert head_containers[0]["name"] == "ray-head"

    groups = spec["workerGroupSpecs"]
    names = [g["groupName"] for g in groups]
    assert len(names) == len(set(names)) >= 2
    gpu_groups = []
    for group in groups:
        assert isinstance(group["rayStartParams"], dict)
        assert 0 <= group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"]
        containers = group["template"]["spec"]["containers"]
        assert containers and all(c.get("name") and c.get("image") for c in containers)
        limits = containers[0]["resources"]["limits"]
        if "nvidia.com/gpu" in limits:
            assert int(limits["nvidia.com/gpu"]) >= 1
            gpu_groups.append(group["groupName"])
    assert len(gpu_groups) == 1, "expected exactly one GPU worker group"
    assert len(groups) - len(gpu_groups) >= 1, "expected a CPU worker group"
    images = {c["image"] for d in _walk(spec) for c in d.get("containers", [])}
    assert images == {IMAGE}


def test_raycluster_manifest_has_kuberay_required_fields() -> None:
    manifest = _load(RAYCLUSTER)
    assert manifest["apiVersion"] == "ray.io/v1"
    assert manifest["kind"] == "RayCluster"
    assert manifest["metadata"]["name"]
    _check_ray_cluster_spec(manifest["spec"])


def test_rayjob_manifest_runs_the_training_entry_point_on_the_same_cluster_spec() -> None:
    job, cluster = _load(RAYJOB), _load(RAYCLUSTER)
    assert job["apiVersion"] == "ray.io/v1"
    assert job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["entrypoint"] == ("python /home/ray/meta-dist/jobs/train.py --config omniglot_maml "
                                  "--data /data/omniglot --run-dir /runs/omniglot_maml")
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] > 0
    _check_ray_cluster_spec(spec["rayClusterSpec"])
    assert spec["rayClusterSpec"] == cluster["spec"], "rayjob.yaml drifted from raycluster.yaml"
    # The entrypoint's path is where the image puts the repository.
    assert "WORKDIR /home/ray/meta-dist" in DOCKERFILE.read_text()


@pytest.mark.parametrize("path", [RAYCLUSTER, RAYJOB])
def test_kuberay_manifests_expose_nothing(path: Path) -> None:
    for node in _walk(_load(path)):
        for key in ("type", "serviceType"):
            assert node.get(key) not in ("LoadBalancer", "NodePort"), f"{path}: {node}"
        assert "hostNetwork" not in node and "hostPort" not in node, f"{path}: {node}"


@pytest.mark.parametrize("path", [CLUSTER_YAML, RAYCLUSTER, RAYJOB, DOCKERFILE, LOCAL_SH])
def test_no_config_binds_anything_to_all_interfaces(path: Path) -> None:
    text = path.read_text()
    assert "0.0.0.0" not in text and "::/0" not in text
    for match in re.finditer(r"dashboard[-_]host[\"']?\s*[:=]\s*[\"']?([^\s\"']+)", text):
        assert match.group(1) == "127.0.0.1", f"{path}: {match.group(0)}"


# ---------------------------------------------------------------------------- image and script


def test_dockerfile_pins_the_stack_and_runs_as_non_root() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    for pin in ('"torch==2.14.1"', '"torchvision==0.29.1"', '"ray[default]==2.58.*"'):
        assert pin in text
    for package in ("pyarrow==", "pyyaml==", "matplotlib==", "gymnasium[mujoco]=="):
        assert package in text, f"{package} should be pinned"
    assert re.search(r"^RUN pip install \.", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert not re.search(r"^(ENV|ARG)\s+\S*(SECRET|PASSWORD|TOKEN|ACCESS_KEY)", text, re.M | re.I)


def test_local_sh_is_a_strict_script_with_help() -> None:
    assert os.access(LOCAL_SH, os.X_OK)
    text = LOCAL_SH.read_text()
    assert "set -euo pipefail" in text
    assert "--node-ip-address=127.0.0.1" in text and "--dashboard-host=127.0.0.1" in text
    subprocess.run(["bash", "-n", str(LOCAL_SH)], check=True)
    shown = subprocess.run([str(LOCAL_SH), "--help"], capture_output=True, text=True, check=True)
    for command in ("start", "join", "stop", "http://127.0.0.1:8265"):
        assert command in shown.stdout
    bad = subprocess.run([str(LOCAL_SH), "launch"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown command" in bad.stderr


def test_local_sh_without_ray_on_path_fails_with_a_hint() -> None:
    path = "/usr/bin:/bin"
    if shutil.which("ray", path=path):
        pytest.skip("a system-wide ray is installed")
    result = subprocess.run([str(LOCAL_SH), "start"], capture_output=True, text=True,
                            env={**os.environ, "PATH": path})
    assert result.returncode == 2
    assert "ray is not on PATH" in result.stderr
