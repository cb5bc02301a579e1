"""Every condition type and reason the operator writes, in one place (CamelCase, as the
Kubernetes API conventions ask). Events use the same reasons."""

from __future__ import annotations

# -- condition types ---------------------------------------------------------------------------
READY = "Ready"
BACKEND_REACHABLE = "BackendReachable"
SECRETS_RESOLVED = "SecretsResolved"
BINDING_PUBLISHED = "BindingPublished"

# -- reasons -----------------------------------------------------------------------------------
#: Ready: everything below is true.
RECONCILED = "Reconciled"
#: Not yet looked at by this operator.
PENDING = "Pending"
#: The spec cannot be used (it passed the schema but not the model, or the config is invalid).
INVALID_SPEC = "InvalidSpec"
#: A referenced Secret, or a key in it, does not exist.
SECRET_NOT_FOUND = "SecretNotFound"
#: Every referenced Secret key was read.
SECRETS_FOUND = "SecretsFound"
#: The operator may not read a referenced Secret, or another API call failed.
KUBERNETES_API_ERROR = "KubernetesAPIError"
#: The backend answered a ping.
PROBE_SUCCEEDED = "ProbeSucceeded"
#: Connection refused, reset, name not resolved, or no answer in time.
BACKEND_UNREACHABLE = "BackendUnreachable"
#: The backend rejected the credentials.
AUTHENTICATION_FAILED = "AuthenticationFailed"
#: The TLS handshake failed (certificate, name, protocol).
TLS_FAILED = "TLSFailed"
#: The backend answered with a refusal that is not about credentials.
BACKEND_REFUSED = "BackendRefused"
#: Not checked because an earlier step failed.
NOT_CHECKED = "NotChecked"
#: The binding Secret and workload Role are up to date.
PUBLISHED = "Published"
#: A Secret or Role of the binding's name exists and belongs to someone else.
BINDING_CONFLICT = "BindingConflict"

# -- event-only reasons ------------------------------------------------------------------------
BACKEND_RECOVERED = "BackendRecovered"
DATA_PURGED = "DataPurged"
DATA_RETAINED = "DataRetained"
PURGE_FAILED = "PurgeFailed"
LEASES_REMOVED = "LeasesRemoved"

#: Reasons of a problem that a retry can fix without anyone changing the spec.
RETRYABLE = frozenset(
    {
        SECRET_NOT_FOUND,
        KUBERNETES_API_ERROR,
        BACKEND_UNREACHABLE,
        AUTHENTICATION_FAILED,
        TLS_FAILED,
        BACKEND_REFUSED,
        BINDING_CONFLICT,
    }
)
