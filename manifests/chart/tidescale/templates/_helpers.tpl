{{/* Chart name, truncated to the 63 characters of a label. */}}
{{- define "tidescale.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name prefix of every object: the release name when it contains the chart name. */}}
{{- define "tidescale.fullname" -}}
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

{{- define "tidescale.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Names of the objects the binary and the APIServices refer to. */}}
{{- define "tidescale.operatorName" -}}
{{- printf "%s-operator" (include "tidescale.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "tidescale.adapterServiceName" -}}
{{- printf "%s-metrics-apiserver" (include "tidescale.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "tidescale.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tidescale.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}
{{- define "tidescale.clusterObjectNamespace" -}}
{{- default .Release.Namespace .Values.clusterObjectNamespace }}
{{- end }}
{{- define "tidescale.image" -}}
{{- $repo := printf "%s/%s" .Values.image.registry .Values.image.repository | trimPrefix "/" }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "tidescale.labels" -}}
helm.sh/chart: {{ include "tidescale.chart" . }}
{{ include "tidescale.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tidescale
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select the operator pods (never change them on upgrade). */}}
{{- define "tidescale.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tidescale.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The three APIServices: name, group, version, groupPriorityMinimum, versionPriority. */}}
{{- define "tidescale.apiServices" -}}
{{- $list := list (dict "group" "external.metrics.k8s.io" "version" "v1beta1" "groupPriorityMinimum" 100 "versionPriority" 100) }}
{{- if .Values.adapter.customMetrics }}
{{- $list = append $list (dict "group" "custom.metrics.k8s.io" "version" "v1beta2" "groupPriorityMinimum" 100 "versionPriority" 200) }}
{{- $list = append $list (dict "group" "custom.metrics.k8s.io" "version" "v1beta1" "groupPriorityMinimum" 100 "versionPriority" 100) }}
{{- end }}
{{- toJson $list }}
{{- end }}

{{/* Fail early on contradictory values. */}}
{{- define "tidescale.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: only one replica may poll and scale" }}
{{- end }}
{{- if and (eq .Values.certificates.mode "secret") .Values.adapter.enabled }}
{{- if not .Values.certificates.secret.name }}
{{- fail "certificates.mode=secret needs certificates.secret.name (a kubernetes.io/tls Secret)" }}
{{- end }}
{{- if not .Values.certificates.secret.caBundle }}
{{- fail "certificates.mode=secret needs certificates.secret.caBundle (base64 PEM of the CA) for the APIServices" }}
{{- end }}
{{- end }}
{{- end }}

{{- /* Rules on namespaced objects: a ClusterRole, or a Role in the watched namespace. */}}
{{- define "tidescale.namespacedRules" -}}
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects", "scaledjobs", "triggerauthentications"]
  verbs: ["get", "list", "watch", "update", "patch"]
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects/status", "scaledjobs/status", "triggerauthentications/status"]
  verbs: ["get", "update", "patch"]
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects/finalizers", "scaledjobs/finalizers", "triggerauthentications/finalizers"]
  verbs: ["update"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
{{- range .Values.rbac.scaledRefKinds }}
- apiGroups: [{{ .apiGroup | quote }}]
  resources: [{{ .resource | quote }}]
  verbs: ["get", "list", "watch"]
- apiGroups: [{{ .apiGroup | quote }}]
  resources: [{{ printf "%s/scale" .resource | quote }}]
  verbs: ["get", "update", "patch"]
{{- end }}
{{- if .Values.rbac.scaledJobs }}
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
{{- end }}
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if not .Values.rbac.restrictSecretAccess }}
- apiGroups: [""]
  resources: ["secrets", "configmaps"]
  verbs: ["get", "list", "watch"]
{{- end }}
{{- end }}
