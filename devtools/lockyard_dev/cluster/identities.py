"""Who talks to a test control plane: ServiceAccount tokens and kubeconfigs that carry them.

The operator and the workloads in the e2e tests and ``make chaos`` authenticate as
ServiceAccounts (never as the cluster admin), so they get exactly the rights RBAC grants.
"""

from __future__ import annotations

import json
from pathlib import Path

from lockyard_dev.cluster.controlplane import ControlPlane


def service_account_token(
    plane: ControlPlane, namespace: str, account: str, duration: str = "2h"
) -> str:
    """A token of ``account`` through the TokenRequest API (``kubectl create token``)."""
    done = plane.kubectl("create", "token", account, "-n", namespace, f"--duration={duration}")
    return done.stdout.strip()


def token_kubeconfig(
    path: Path, plane: ControlPlane, user: str, token: str, namespace: str | None = None
) -> Path:
    """Write a kubeconfig authenticating as ``user`` with a bearer ``token``; its path."""
    context: dict[str, str] = {"cluster": "lockyard", "user": user}
    if namespace:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "lockyard",
                "cluster": {"server": plane.server, "certificate-authority": str(plane.ca_file)},
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": context}],
        "current-context": user,
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path
