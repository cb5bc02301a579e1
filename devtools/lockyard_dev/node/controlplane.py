"""The project's test control plane, grown what a real node needs from it.

Three additions to `ControlPlane`:

- the controllers that pods on a node need: Deployments and ReplicaSets, pod garbage collection,
  and the node-lifecycle controller (without it a new Node keeps its ``not-ready`` taint, from
  ``TaintNodesByCondition``, and nothing schedules);
- the API server's kubelet client flags, so ``kubectl logs``/``exec`` reach each kubelet on its
  loopback address (InternalIP first: the node names are IPs, and there is no DNS);
- certificates: per node a client one (O ``system:nodes``, so the Node authorizer applies) and a
  serving one for its IP, and one for the scheduler; each gets its kubeconfig.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lockyard_dev.cluster.controlplane import (
    CONTROLLERS,
    ControlPlane,
    ControlPlaneError,
    _kubeconfig,
)
from lockyard_dev.servers.tls import CertificateAuthority, KeyPair, make_certificate

NODE_CONTROLLERS = (
    *CONTROLLERS,
    "deployment-controller",
    "replicaset-controller",
    "job-controller",
    "pod-garbage-collector-controller",
    "node-lifecycle-controller",
)
_CERT_DAYS = 30


class NodeControlPlane(ControlPlane):
    """A `ControlPlane` that kubelets at ``node_ips`` and a kube-scheduler can join."""

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        node_ips: Sequence[str] = ("127.0.0.1",),
        bin_dir: Path | None = None,
    ) -> None:
        super().__init__(workdir, bin_dir=bin_dir)
        self.node_ips = tuple(node_ips)

    def kubelet_kubeconfig(self, node_ip: str) -> Path:
        return self.workdir / f"kubelet-{node_ip}.kubeconfig"

    def kubelet_serving(self, node_ip: str) -> KeyPair:
        pki = self.workdir / "pki"
        return KeyPair(
            pki / f"kubelet-serving-{node_ip}.crt", pki / f"kubelet-serving-{node_ip}.key"
        )

    @property
    def scheduler_kubeconfig(self) -> Path:
        return self.workdir / "scheduler.kubeconfig"

    @property
    def apiserver_port(self) -> int:
        return int(self.server.rsplit(":", 1)[1])

    def _prepare(self) -> None:
        super()._prepare()
        pki = self.workdir / "pki"
        ca = CertificateAuthority(pki / "ca.crt", pki / "ca.key")
        if not ca.key_file.is_file():
            raise ControlPlaneError(f"the control plane's CA key is not at {ca.key_file}")

        def issue(
            name: str,
            cn: str,
            org: str | None = None,
            server: bool = False,
            names: Sequence[str] = (),
        ) -> KeyPair:
            return make_certificate(
                ca, pki, name, cn, organization=org, server=server, names=names, days=_CERT_DAYS
            )

        apiserver = self._require(self._apiserver)
        kubelet_client = issue(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"
        )
        apiserver.argv += [
            f"--kubelet-client-certificate={kubelet_client.cert_file}",
            f"--kubelet-client-key={kubelet_client.key_file}",
            f"--kubelet-certificate-authority={ca.cert_file}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
        ]
        controller_manager = self._require(self._controller_manager)
        controller_manager.argv = [
            f"--controllers={','.join(NODE_CONTROLLERS)}"
            if arg.startswith("--controllers=")
            else arg
            for arg in controller_manager.argv
        ]
        for node_ip in self.node_ips:
            user = f"system:node:{node_ip}"
            client = issue(f"kubelet-client-{node_ip}", user, "system:nodes")
            issue(f"kubelet-serving-{node_ip}", user, "system:nodes", server=True, names=[node_ip])
            self.kubelet_kubeconfig(node_ip).write_text(
                _kubeconfig(self.server, ca.cert_file, client, user)
            )
        scheduler = issue("scheduler", "system:kube-scheduler")
        self.scheduler_kubeconfig.write_text(
            _kubeconfig(self.server, ca.cert_file, scheduler, "system:kube-scheduler")
        )
