{{/* Selector labels of the node agent's DaemonSet pods. */}}
{{- define "haltgate.nodeAgentSelector" -}}
app.kubernetes.io/name: {{ include "haltgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: node-agent
{{- end -}}
