"""One rule for credentials and the default namespace (``lockyard.kube.config``), shared by the
library, the mirror, the CLI and the operator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lockyard.errors import ConfigError
from lockyard.kube import config
from lockyard.kube.config import KubeSource, current_namespace, load_api_client, resolve


def kubeconfig_file(path: Path, namespace: str | None) -> Path:
    context: dict[str, str] = {"cluster": "c", "user": "u"}
    if namespace is not None:
        context["namespace"] = namespace
    path.write_text(
        json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "main",
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "main", "context": context},
                         {"name": "other", "context": {"cluster": "c", "user": "u",
                                                       "namespace": "elsewhere"}}],
        })
    )  # fmt: skip
    return path


@pytest.fixture
def in_a_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as a pod sees itself: a service account folder and the service host."""
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("token")
    (account / "namespace").write_text("pod-ns\n")
    monkeypatch.setattr(config, "SERVICE_ACCOUNT_DIR", account)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.delenv("KUBECONFIG", raising=False)


@pytest.mark.usefixtures("in_a_pod")
def test_explicit_beats_kubeconfig_env_beats_the_pods_service_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve() == KubeSource(in_cluster=True)
    assert current_namespace() == "pod-ns"

    from_env = kubeconfig_file(tmp_path / "env", "env-ns")
    monkeypatch.setenv("KUBECONFIG", str(from_env))
    assert resolve() == KubeSource(kubeconfig=str(from_env))
    assert current_namespace() == "env-ns"

    explicit = kubeconfig_file(tmp_path / "explicit", None)
    assert resolve(str(explicit)) == KubeSource(kubeconfig=str(explicit))
    assert current_namespace(str(explicit)) == "default"  # its context names none
    assert current_namespace(str(explicit), "other") == "elsewhere"
    # A context alone still means the kubeconfig ($KUBECONFIG here), never the pod's account.
    assert resolve(context="other") == KubeSource(kubeconfig=str(from_env), context="other")
    assert current_namespace(context="other") == "elsewhere"


def test_loading_credentials_and_their_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    client = load_api_client(str(kubeconfig_file(tmp_path / "kubeconfig", "ns")))
    try:
        assert client.configuration.host == "https://127.0.0.1:1"
    finally:
        client.close()
    with pytest.raises(ConfigError, match="no usable Kubernetes credentials"):
        load_api_client(str(tmp_path / "missing"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert current_namespace() == "default"
