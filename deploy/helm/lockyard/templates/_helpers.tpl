{{/* The release's resource names: <release>-lockyard, or just "lockyard" when the release is called that. */}}
{{- define "lockyard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "lockyard.selectorLabels" -}}
app.kubernetes.io/name: lockyard-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "lockyard.labels" -}}
{{ include "lockyard.selectorLabels" . }}
app.kubernetes.io/part-of: lockyard
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "lockyard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "lockyard.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* The namespaces the operator serves, for scopes "namespaces" and "own". */}}
{{- define "lockyard.watchedNamespaces" -}}
{{- if eq .Values.watch.scope "own" -}}
{{- list .Release.Namespace | toJson -}}
{{- else if eq .Values.watch.scope "namespaces" -}}
{{- required "watch.namespaces must list at least one namespace when watch.scope is namespaces" (.Values.watch.namespaces | default nil) | toJson -}}
{{- else if eq .Values.watch.scope "all" -}}
{{- list | toJson -}}
{{- else -}}
{{- fail (printf "watch.scope must be all, namespaces or own, not %q" .Values.watch.scope) -}}
{{- end -}}
{{- end -}}

{{/* What the operator does inside each namespace it serves. Each rule says why (as deploy/clusterrole.yaml). */}}
{{- define "lockyard.namespacedRules" -}}
# Watch the StateStores it reconciles; patch their finalizer and kopf's progress annotations.
- apiGroups: ["lockyard.dev"]
  resources: ["statestores"]
  verbs: ["get", "list", "watch", "patch"]
# Write what it observes into the status subresource.
- apiGroups: ["lockyard.dev"]
  resources: ["statestores/status"]
  verbs: ["patch"]
# Mark the binding Secret and Role it owns blockOwnerDeletion (OwnerReferencesPermissionEnforcement).
- apiGroups: ["lockyard.dev"]
  resources: ["statestores/finalizers"]
  verbs: ["update"]
# Read the Secrets a StateStore references (watched, so a rotation re-reconciles at once), and publish each store's binding Secret.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update"]
# Publish and update each store's workload Role lockyard-store-<name>.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles"]
  verbs: ["get", "create", "update"]
# Remove a deleted store's mirrored Leases and stale ones (the reaper); the other verbs because the workload Role grants them.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]
# Post Events about StateStores.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}

{{/* What it needs cluster-wide whatever it serves. */}}
{{- define "lockyard.clusterRules" -}}
# kopf notices CustomResourceDefinitions appearing and going (so StateStores are served once the CRD exists).
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
# kopf follows namespaces to know which exist.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end -}}
