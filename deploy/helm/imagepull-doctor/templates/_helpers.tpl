{{/* Helpers of the imagepull-doctor chart: names, labels, the Lease name and value checks. */}}

{{/* Chart name, at most 63 characters. */}}
{{- define "imagepull-doctor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's resources, at most 63 characters. */}}
{{- define "imagepull-doctor.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the bot's pods. */}}
{{- define "imagepull-doctor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imagepull-doctor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every resource. */}}
{{- define "imagepull-doctor.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | trunc 63 | trimSuffix "-" }}
{{ include "imagepull-doctor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: imagepull-doctor
{{- end -}}

{{/* Name of the ServiceAccount the bot runs as. */}}
{{- define "imagepull-doctor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "imagepull-doctor.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Name of the existing Secret with the bot's credentials; rendering fails without it. */}}
{{- define "imagepull-doctor.secretName" -}}
{{- required "existingSecret.name is required: create a Secret with the Slack tokens and the database URL first" .Values.existingSecret.name -}}
{{- end -}}

{{/* Lease name prefix passed to the bot (IMAGEPULL_HA__LEASE_NAME). */}}
{{- define "imagepull-doctor.leasePrefix" -}}
{{- default (include "imagepull-doctor.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{/* Name of the Lease the bot takes: the prefix and the cluster name (bot/composition.py appends it). */}}
{{- define "imagepull-doctor.leaseName" -}}
{{- printf "%s-%s" (include "imagepull-doctor.leasePrefix" .) .Values.cluster.name -}}
{{- end -}}

{{/* Image reference: repository@digest, or repository:tag (default: the chart's appVersion). */}}
{{- define "imagepull-doctor.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The bot's database URL (from the existing Secret) and logging settings. */}}
{{- define "imagepull-doctor.databaseEnv" -}}
- name: IMAGEPULL_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "imagepull-doctor.secretName" . }}
      key: {{ .Values.existingSecret.databaseUrlKey }}
- name: IMAGEPULL_LOG_LEVEL
  value: {{ .Values.logging.level | quote }}
- name: IMAGEPULL_LOG_JSON
  value: {{ .Values.logging.json | quote }}
{{- end -}}

{{/* Checks of value combinations that Kubernetes would accept but that cannot work. */}}
{{- define "imagepull-doctor.validate" -}}
{{- if not (or (eq .Values.slack.mode "socket") (eq .Values.slack.mode "http")) -}}
{{- fail "slack.mode must be socket or http" -}}
{{- end -}}
{{- if and (or .Values.actions.recreateSecret .Values.actions.linkSecret) (not .Values.actions.namespaces) -}}
{{- fail "actions.recreateSecret and actions.linkSecret need actions.namespaces (the namespaces where they may act)" -}}
{{- end -}}
{{- end -}}
