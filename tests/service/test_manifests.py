"""deploy/kubernetes/ validates against the Kubernetes schemas (kubernetes-validate, strict)."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.orchestrator.runs import ROOT

MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_a_valid_kubernetes_resource(path: Path) -> None:
    """Each document of each manifest validates strictly (no unknown fields) for 1.37."""
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)


def test_every_worker_role_has_a_drained_deployment_with_probes() -> None:
    """A Deployment per role, each with readiness and liveness probes, a preStop drain, and
    its local logs on the one shared volume a live worker adopts a lost pod's logs from."""
    docs = [d for p in MANIFESTS for d in yaml.safe_load_all(p.read_text()) if d]
    workers = {
        d["spec"]["template"]["spec"]["containers"][0]["args"][2]: d
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["name"] != "agentmem-api"
    }
    assert set(workers) == {"research", "writer", "review", "coordinator"}
    for deployment in workers.values():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert {"readinessProbe", "livenessProbe"} <= set(container)
        assert "kill -TERM 1" in " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes[mounts["/data/wal"]]["persistentVolumeClaim"]["claimName"] == "agentmem-wal"
    claims = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PersistentVolumeClaim"}
    assert claims["agentmem-wal"]["spec"]["accessModes"] == ["ReadWriteMany"]
    kinds = {d["kind"] for d in docs}
    assert {"Service", "HorizontalPodAutoscaler"} <= kinds


def test_every_compose_worker_shares_the_local_log_volume() -> None:
    """docker-compose.yml: each worker role mounts the one named volume at /data/wal."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    workers = [s for s in services.values() if s.get("command", [])[1:2] == ["worker"]]

    assert {s["command"][2] for s in workers} == {"research", "writer", "review", "coordinator"}
    for service in workers:
        assert "wal:/data/wal" in service["volumes"]
    assert "wal" in compose["volumes"]
