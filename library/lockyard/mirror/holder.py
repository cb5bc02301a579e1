"""Who holds locks in this process, as a Lease shows it: a pod (downward API) or a host."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lockyard.kube.config import pod_namespace
from lockyard.mirror.lease_names import owner_prefix


@dataclass(frozen=True, slots=True)
class Holder:
    """A pod (``POD_NAME``/``POD_NAMESPACE``/``POD_UID``) or, outside Kubernetes, a host."""

    name: str
    namespace: str | None = None
    uid: str | None = None

    @classmethod
    def detect(cls, environ: Mapping[str, str] | None = None) -> Holder:
        """From ``POD_NAME``/``POD_NAMESPACE``/``POD_UID``, else the hostname."""
        env = os.environ if environ is None else environ
        name = env.get("POD_NAME") or socket.gethostname() or "unknown"
        namespace = env.get("POD_NAMESPACE") or None
        if namespace is None and env.get("POD_NAME"):
            namespace = pod_namespace()
        return cls(name=name, namespace=namespace, uid=env.get("POD_UID") or None)

    def identity(self, owner: str) -> str:
        """``holderIdentity``: the pod (or host) and the acquisition."""
        return f"{self.name}_{owner_prefix(owner)}"

    def pod(self) -> str:
        """``namespace/name`` of the pod, or ``''`` outside one."""
        if self.uid is None or self.namespace is None:
            return ""
        return f"{self.namespace}/{self.name}"

    def owner_reference(self, lease_namespace: str) -> dict[str, Any] | None:
        """An ownerReference to the pod, when it can own a Lease in ``lease_namespace``.

        Owners must share the dependent's namespace (the garbage collector deletes a dependent
        whose owner it cannot find there), so a pod elsewhere owns nothing.
        """
        if self.uid is None or self.namespace != lease_namespace:
            return None
        return {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid}
