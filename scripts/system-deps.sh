#!/usr/bin/env bash
# Installs the servers the tests, benchmarks and demo start themselves, when they are missing.
# Idempotent: does nothing when everything is present.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-sentinel >/dev/null || need+=(redis-sentinel)
ls /usr/lib/postgresql/15/bin/postgres >/dev/null 2>&1 || need+=(postgresql-15)
# The test node (lockyard_dev.node): container runtime, the loopback CNI plugin, and the
# offline image builders (mmdebstrap for the Python base, buildah for deploy/Dockerfile).
command -v containerd >/dev/null || need+=(containerd)
[ -x /usr/sbin/runc ] || need+=(runc)
[ -x /usr/lib/cni/loopback ] || need+=(containernetworking-plugins)
command -v buildah >/dev/null || need+=(buildah)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v gcc >/dev/null || need+=(gcc)
ls /usr/lib/*/libc.a >/dev/null 2>&1 || need+=(libc6-dev)  # gcc -static (the pause binary)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "system-deps: installing ${need[*]} with apt-get"
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
$sudo_cmd apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}"
