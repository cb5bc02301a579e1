"""Configuration files for one node's containerd, CNI and kubelet, all state under its folder.

Why each non-default setting is there:

- containerd: ``restrict_oom_score_adj`` because root here lacks ``CAP_SYS_RESOURCE`` (without
  it runc fails every container with "can't get final child's PID from pipe: EOF"); cgroupfs
  (PID 1 is not systemd); root, state, runc state and the ``opt`` plugin folder under the node's
  folder; the sandbox image is the locally built pause.
- CNI: a loopback-only conflist. It only makes the node Ready: every pod is ``hostNetwork`` (no
  bridge, no pod network), and hostNetwork pods never call it.
- kubelet: it binds only the node's loopback address, on free ports; cgroup v1 and swap are
  accepted; eviction and image GC are relaxed (a small disk, and images imported by hand that
  no registry could give back); the pods' resolv.conf names no real resolver.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lockyard_dev.node.images import PAUSE_REF

RUNC = "/usr/sbin/runc"
CNI_LOOPBACK = Path("/usr/lib/cni/loopback")


@dataclass(frozen=True)
class NodeLayout:
    """Where one node keeps everything: ``<run>/node-<ip>/...``."""

    folder: Path
    ip: str
    kubelet_port: int
    healthz_port: int
    #: containerd's root (images, content, snapshots): the run's own, or the shared image store.
    containerd_root: Path

    @property
    def containerd(self) -> Path:
        return self.folder / "containerd"

    @property
    def socket(self) -> Path:
        return self.containerd / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.containerd / "config.toml"

    @property
    def cni(self) -> Path:
        return self.folder / "cni"

    @property
    def kubelet(self) -> Path:
        return self.folder / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.kubelet / "config.yaml"

    @property
    def logs(self) -> Path:
        return self.folder / "logs"


def write_containerd_config(node: NodeLayout) -> None:
    c = node.containerd
    c.mkdir(parents=True, exist_ok=True)
    node.containerd_config.write_text(
        f"""version = 2
root = "{node.containerd_root}"
state = "{c / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", \
"io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{node.socket}"
[ttrpc]
  address = "{node.socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{c / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_REF}"
  enable_selinux = false
  restrict_oom_score_adj = true
  stream_server_address = "{node.ip}"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{RUNC}"
        Root = "{c / "runc"}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{node.cni / "bin"}"
    conf_dir = "{node.cni / "conf"}"
"""
    )


def write_cni_config(node: NodeLayout) -> None:
    (node.cni / "bin").mkdir(parents=True, exist_ok=True)
    (node.cni / "conf").mkdir(parents=True, exist_ok=True)
    target = node.cni / "bin" / "loopback"
    target.write_bytes(CNI_LOOPBACK.read_bytes())
    target.chmod(0o755)
    conflist = {
        "cniVersion": "1.0.0",
        "name": "loopback-only",
        "plugins": [{"type": "loopback"}],
    }
    (node.cni / "conf" / "10-loopback-only.conflist").write_text(json.dumps(conflist, indent=1))


def write_kubelet_config(
    node: NodeLayout, serving_cert: Path, serving_key: Path, ca: Path, cgroup_root: str = "/"
) -> None:
    k = node.kubelet
    for sub in ("root", "podlogs", "manifests", "pki"):
        (k / sub).mkdir(parents=True, exist_ok=True)
    # The VM's resolver is not on loopback; nothing in a pod resolves names anyway.
    (k / "resolv.conf").write_text("nameserver 127.0.0.53\n")
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node.ip,
        "port": node.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": node.ip,
        "healthzPort": node.healthz_port,
        "tlsCertFile": str(serving_cert),
        "tlsPrivateKeyFile": str(serving_key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "cgroupsPerQOS": True,
        "cgroupRoot": cgroup_root,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{node.socket}",
        "imageServiceEndpoint": f"unix://{node.socket}",
        "resolvConf": str(k / "resolv.conf"),
        "podLogsDir": str(k / "podlogs"),
        "staticPodPath": str(k / "manifests"),
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "5s",
        "serializeImagePulls": False,
        "maxPods": 50,
        "makeIPTablesUtilChains": False,
        "localStorageCapacityIsolation": True,
        "protectKernelDefaults": False,
    }
    # JSON is YAML: the kubelet reads either.
    node.kubelet_config.write_text(json.dumps(config, indent=1))
