"""The test node's admission policies: what makes unmodified manifests run on a loopback node.

Built-in ``MutatingAdmissionPolicy`` objects (GA in 1.36, no webhook server needed):

- ``lockyard-node-loopback-pods``: every pod (and each of its containers and init containers)
  gets ``hostNetwork: true``, ``imagePullPolicy: Never`` (images are imported, no registry is
  reachable) and ``KUBERNETES_SERVICE_HOST=127.0.0.1`` with the API server's port: there is no
  Service network, and the ``kubernetes`` ClusterIP must never be dialled. ``env`` merges by
  name, so a value already there is overridden.
- ``lockyard-node-privileged-namespaces``: every namespace is labelled Pod Security
  ``privileged``, which hostNetwork needs (``deploy/namespace.yaml`` asks for ``restricted``).

A real cluster needs none of this: pods get their own network, images come from a registry, and
the ``kubernetes`` Service reaches the API server.
"""

from __future__ import annotations

POLICY_NAMES = ("lockyard-node-loopback-pods", "lockyard-node-privileged-namespaces")

_CONTAINER_PATCH = """{list}.map(c, Object.spec.{field}{{
              name: c.name,
              imagePullPolicy: "Never",
              env: [
                Object.spec.{field}.env{{name: "KUBERNETES_SERVICE_HOST", value: "127.0.0.1"}},
                Object.spec.{field}.env{{name: "KUBERNETES_SERVICE_PORT", value: "{port}"}}
              ]
            }})"""


def policies(apiserver_port: int) -> str:
    """The policies and their bindings as one YAML stream, for ``kubectl apply -f -``."""
    containers = _CONTAINER_PATCH.format(
        list="object.spec.containers", field="containers", port=apiserver_port
    )
    init_containers = _CONTAINER_PATCH.format(
        list="object.spec.initContainers", field="initContainers", port=apiserver_port
    )
    return f"""\
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicy
metadata: {{name: lockyard-node-loopback-pods}}
spec:
  matchConstraints:
    resourceRules:
    - {{apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["pods"]}}
  failurePolicy: Fail
  reinvocationPolicy: Never
  mutations:
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: >
        Object{{
          spec: Object.spec{{
            hostNetwork: true,
            containers: {containers}
          }}
        }}
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: >
        has(object.spec.initContainers) ? Object{{
          spec: Object.spec{{
            initContainers: {init_containers}
          }}
        }} : Object{{}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicyBinding
metadata: {{name: lockyard-node-loopback-pods}}
spec: {{policyName: lockyard-node-loopback-pods}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicy
metadata: {{name: lockyard-node-privileged-namespaces}}
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["namespaces"]
  failurePolicy: Fail
  reinvocationPolicy: Never
  mutations:
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: >
        Object{{metadata: Object.metadata{{
          labels: {{"pod-security.kubernetes.io/enforce": "privileged"}}
        }}}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicyBinding
metadata: {{name: lockyard-node-privileged-namespaces}}
spec: {{policyName: lockyard-node-privileged-namespaces}}
"""
