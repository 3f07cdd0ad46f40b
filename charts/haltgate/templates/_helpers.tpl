{{/* Names, labels and images shared by every template. */}}

{{- define "haltgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: <release>-haltgate, or the release name when it already says haltgate. */}}
{{- define "haltgate.fullname" -}}
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

{{- define "haltgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "haltgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: haltgate
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "haltgate.operatorSelector" -}}
app.kubernetes.io/name: {{ include "haltgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "haltgate.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "haltgate.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The haltgate image, by digest when one is given. */}}
{{- define "haltgate.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Webhook Service name; the operator is told it with --webhook-service. */}}
{{- define "haltgate.webhookService" -}}
{{- printf "%s-webhook" (include "haltgate.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Secret with the audit DSN: the user's, or the bundled PostgreSQL's. */}}
{{- define "haltgate.auditSecret" -}}
{{- if .Values.audit.database.existingSecret -}}
{{- .Values.audit.database.existingSecret -}}
{{- else if .Values.postgresql.enabled -}}
{{- printf "%s-postgresql" (include "haltgate.fullname" .) -}}
{{- else -}}
{{- fail "audit: set audit.database.existingSecret (a Secret with the DSN) or postgresql.enabled=true" -}}
{{- end -}}
{{- end -}}

{{- define "haltgate.auditSecretKey" -}}
{{- if .Values.audit.database.existingSecret -}}{{ .Values.audit.database.secretKey }}{{- else -}}dsn{{- end -}}
{{- end -}}

{{/* Secret with the pool migration's DSN: pools.migrate's own, else the operator's. */}}
{{- define "haltgate.poolMigrateSecret" -}}
{{- if .Values.pools.migrate.existingSecret -}}
{{- .Values.pools.migrate.existingSecret -}}
{{- else if .Values.pools.database.existingSecret -}}
{{- .Values.pools.database.existingSecret -}}
{{- else -}}
{{- fail "pools.migrate: set pools.migrate.existingSecret or pools.database.existingSecret (a Secret with the pool database DSN)" -}}
{{- end -}}
{{- end -}}

{{- define "haltgate.poolMigrateSecretKey" -}}
{{- if .Values.pools.migrate.existingSecret -}}{{ .Values.pools.migrate.secretKey }}{{- else -}}{{ .Values.pools.database.secretKey }}{{- end -}}
{{- end -}}

{{/* Pod spec fields shared by the chart's Jobs (schema migrations, audit export). */}}
{{- define "haltgate.jobPod" -}}
serviceAccountName: {{ include "haltgate.serviceAccountName" . }}
automountServiceAccountToken: false
restartPolicy: OnFailure
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "haltgate.podSecurityContext" . | nindent 2 }}
volumes:
  - name: tmp
    emptyDir: {sizeLimit: 1Gi}
{{- end -}}

{{/* A post-install/post-upgrade hook Job running `haltgate <component> migrate` with the
     DSN from a Secret. Takes a dict: root (the chart context), component (audit, pool),
     envVar (the command's DSN variable), secret, key, resources. */}}
{{- define "haltgate.migrateJob" -}}
{{- $root := .root -}}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "haltgate.fullname" $root }}-{{ .component }}-migrate
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "haltgate.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
  annotations:
    "helm.sh/hook": post-install,post-upgrade
    "helm.sh/hook-delete-policy": before-hook-creation,hook-succeeded
spec:
  backoffLimit: 10
  activeDeadlineSeconds: 900
  template:
    metadata:
      labels:
        {{- include "haltgate.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
    spec:
      {{- include "haltgate.jobPod" $root | nindent 6 }}
      containers:
        - name: migrate
          image: {{ include "haltgate.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: ["haltgate", {{ .component | quote }}, "migrate"]
          resources:
            {{- toYaml .resources | nindent 12 }}
          env:
            - name: {{ .envVar }}
              valueFrom: {secretKeyRef: {name: {{ .secret }}, key: {{ .key }}}}
          securityContext:
            {{- include "haltgate.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
{{- end -}}

{{/* Pod and container security settings shared by the chart's own workloads. */}}
{{- define "haltgate.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "haltgate.containerSecurityContext" -}}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The operator's InjectionConfig (camelCase keys of haltgate.operator.injection). */}}
{{- /* Values the operator would refuse at start (a crash loop after a "successful"
     install): refused by helm instead, with the value's name. The operator checks the
     same (haltgate.operator.injection.InjectionConfig). */ -}}
{{- define "haltgate.checkInjection" -}}
{{- $i := .Values.injection -}}
{{- if eq (int $i.opaUID) (int $i.proxyUID) -}}
{{- fail (printf "injection.opaUID (%v) must differ from injection.proxyUID: the proxy UID is the one exempt from redirection" $i.opaUID) -}}
{{- end -}}
{{- $ports := list (int $i.explicitPort) (int $i.transparentPort) (int $i.adminPort) (int $i.metricsPort) (int $i.opaPort) (int $i.opaDiagnosticPort) (int $i.shipperMetricsPort) -}}
{{- if ne (len $ports) (len (uniq $ports)) -}}
{{- fail (printf "injection ports must be distinct: explicitPort %v, transparentPort %v, adminPort %v, metricsPort %v, opaPort %v, opaDiagnosticPort %v, shipperMetricsPort %v" $i.explicitPort $i.transparentPort $i.adminPort $i.metricsPort $i.opaPort $i.opaDiagnosticPort $i.shipperMetricsPort) -}}
{{- end -}}
{{- range $uid := $i.meshProxyUIDs -}}
{{- if or (eq (int $uid) (int $i.proxyUID)) (eq (int $uid) (int $i.opaUID)) -}}
{{- fail (printf "injection.meshProxyUIDs: %v must differ from proxyUID and opaUID" $uid) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "haltgate.injectionConfig" -}}
{{- include "haltgate.checkInjection" . -}}
image: {{ include "haltgate.image" . | quote }}
opaImage: {{ .Values.opa.image | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
proxyUID: {{ .Values.injection.proxyUID }}
opaUID: {{ .Values.injection.opaUID }}
explicitPort: {{ .Values.injection.explicitPort }}
transparentPort: {{ .Values.injection.transparentPort }}
adminPort: {{ .Values.injection.adminPort }}
metricsPort: {{ .Values.injection.metricsPort }}
opaPort: {{ .Values.injection.opaPort }}
opaDiagnosticPort: {{ .Values.injection.opaDiagnosticPort }}
auditDatabaseSecret: {{ .Values.injection.auditDatabaseSecret | quote }}
shipperMetricsPort: {{ .Values.injection.shipperMetricsPort }}
meshProxyUIDs: {{ toJson .Values.injection.meshProxyUIDs }}
meshContainers: {{ toJson .Values.injection.meshContainers }}
redirect: {{ .Values.injection.redirect }}
verifyUID: {{ .Values.injection.verifyUID }}
priceTable: {{ toJson .Values.pricing.table }}
operatorNamespace: {{ .Release.Namespace }}
excludedNamespaces: {{ toJson .Values.operator.excludedNamespaces }}
{{- end -}}
