{{/*
The chart's name, truncated to 63 characters (a label value's limit).
*/}}
{{- define "exactly.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's resources: <release>-exactly, or the release name alone when it
already contains the chart name.
*/}}
{{- define "exactly.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of cluster-scoped resources (ClusterRole, ClusterRoleBinding): they are shared by every
namespace, so they carry the release namespace too and two releases of the same name in two
namespaces never collide.
*/}}
{{- define "exactly.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "exactly.fullname" .) | trunc 253 | trimSuffix "-" }}
{{- end }}

{{- define "exactly.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource.
*/}}
{{- define "exactly.labels" -}}
helm.sh/chart: {{ include "exactly.chart" . }}
{{ include "exactly.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: exactly
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels that select the operator's pods; never change them between versions (a Deployment's
selector is immutable).
*/}}
{{- define "exactly.selectorLabels" -}}
app.kubernetes.io/name: {{ include "exactly.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "exactly.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "exactly.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "exactly.leaseName" -}}
{{- default (include "exactly.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "exactly.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The rules the operator needs on the namespaces it watches (a ClusterRole when it watches all of
them, a Role in each otherwise). Least privilege: no wildcard, no delete anywhere.
*/}}
{{- define "exactly.watchRules" -}}
# The custom resources: watched, and patched for the Topic finalizer and the Producer's
# abort-transaction annotation.
- apiGroups: ["exactly.dev"]
  resources: ["kafkaclusters", "pulsarclusters", "topics", "producers", "consumergroups", "pipelines"]
  verbs: ["get", "list", "watch", "patch"]
# A Pipeline's own Producer and ConsumerGroup (server-side apply creates them).
- apiGroups: ["exactly.dev"]
  resources: ["producers", "consumergroups"]
  verbs: ["create"]
# Their status, written by server-side apply.
- apiGroups: ["exactly.dev"]
  resources: ["kafkaclusters/status", "pulsarclusters/status", "topics/status", "producers/status", "consumergroups/status", "pipelines/status"]
  verbs: ["get", "patch"]
# The Secrets it owns (a Producer's or an authenticated ConsumerGroup's <name>-client, a
# Pipeline's <name>-pipeline; server-side apply; they hold the passwords of workloads' own SCRAM
# users) and KafkaCluster credential Secrets.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Producer.spec.statefulSetRef (the instance count follows the StatefulSet), the StatefulSets
# of provisioned KafkaClusters (applied, and deleted when the cluster no longer needs one: only
# those labelled with the cluster and owned by it) and the workers of Pipelines.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The other children of provisioned KafkaClusters: Services, the configuration ConfigMap, the
# PodDisruptionBudget.
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "create", "patch", "delete"]
# A Pipeline's worker pods, read (never written) to tell a removed worker from one still
# stopping before its transactional id is fenced.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
# Events (kube-runtime's Recorder writes events.k8s.io/v1 only).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
