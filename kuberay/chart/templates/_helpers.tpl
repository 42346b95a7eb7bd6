{{/* Names and labels shared by every object of the release (monitoring templates use them too). */}}
{{- define "tierserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* RayService name; KubeRay derives <name>-head-svc and the RayCluster names from it, so keep it short. */}}
{{- define "tierserve.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "tierserve.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "tierserve.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tierserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tierserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tierserve.labels" -}}
{{ include "tierserve.selectorLabels" . }}
app.kubernetes.io/part-of: tierserve
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Labels kube-prometheus-stack selects PodMonitors/PrometheusRules by (kuberay/operator/kube-prometheus-stack-values.yaml). */}}
{{- define "tierserve.monitoringLabels" -}}
{{ include "tierserve.labels" . }}
{{- with .Values.monitoring.selectorLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "tierserve.image" -}}
{{ printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end -}}

{{/* Env every Ray container gets: Serve's data-path switches (from configs/), and
     secrets by reference only, never inlined. */}}
{{- define "tierserve.podEnv" -}}
{{- $g := .Values.generated -}}
{{- range $g.rayServeEnv }}
- name: {{ .name }}
  value: {{ .value | quote }}
{{- end }}
{{- with .Values.secrets.apiKeys }}
{{- if .name }}
- name: {{ $g.apiKeysEnv | default "TIERSERVE_API_KEYS" }}
  valueFrom:
    secretKeyRef: {name: {{ .name | quote }}, key: {{ .key | quote }}}
{{- end }}
{{- end }}
{{- range $k, $envName := ($g.keysEnv | default dict) }}
{{- with (index $.Values.secrets $k) }}
{{- if .name }}
- name: {{ $envName }}
  valueFrom:
    secretKeyRef: {name: {{ .name | quote }}, key: {{ .key | quote }}}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.secrets.s3 }}
{{- if .name }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ .name | quote }}, key: {{ .accessKeyIdKey | quote }}}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ .name | quote }}, key: {{ .secretAccessKeyKey | quote }}}
- name: AWS_SESSION_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ .name | quote }}, key: {{ .sessionTokenKey | quote }}, optional: true}
{{- with .region }}
- name: AWS_DEFAULT_REGION
  value: {{ . | quote }}
{{- end }}
{{- with .endpointUrl }}
- name: AWS_ENDPOINT_URL_S3
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.secrets.huggingFace }}
{{- if .name }}
- name: HF_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ .name | quote }}, key: {{ .key | quote }}}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
