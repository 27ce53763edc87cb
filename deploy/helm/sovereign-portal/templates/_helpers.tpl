{{- define "portal.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "portal.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector of one role's pods: (dict "root" $ "role" "web") */}}
{{- define "portal.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "portal.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "portal.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "portal.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Environment of every role: the secrets as files, then the plain settings. */}}
{{- define "portal.env" -}}
{{- range $key, $variable := .Values.secrets.files }}
- name: {{ $variable }}
  value: /run/secrets/portal/{{ $key }}
{{- end }}
{{- range $name, $value := .Values.config }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- if .Values.metrics.enabled }}
- name: METRICS_PORT
  value: {{ .Values.metrics.port | toString | quote }}
- name: METRICS_HOST
  value: "0.0.0.0"
{{- end }}
{{- with .Values.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The pod spec of one role: (dict "root" $ "role" "web" "values" .Values.web "args" (list …)
     "port" true "data" true "scratch" false "grace" 30 "restartPolicy" "Always") */}}
{{- define "portal.podSpec" -}}
{{- $root := .root -}}
{{- $values := .values -}}
serviceAccountName: {{ include "portal.serviceAccountName" $root }}
automountServiceAccountToken: false
enableServiceLinks: false
terminationGracePeriodSeconds: {{ .grace | default 30 }}
{{- with .restartPolicy }}
restartPolicy: {{ . }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: {{ .role }}
    image: {{ include "portal.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    args:
      {{- toYaml .args | nindent 6 }}
    env:
      {{- include "portal.env" $root | nindent 6 }}
      {{- with .env }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- if or .port (and .metricsPort $root.Values.metrics.enabled) }}
    ports:
      {{- if .port }}
      - name: http
        containerPort: 8000
        protocol: TCP
      {{- end }}
      {{- if $root.Values.metrics.enabled }}
      - name: metrics
        containerPort: {{ $root.Values.metrics.port }}
        protocol: TCP
      {{- end }}
    {{- end }}
    {{- if .port }}
    startupProbe:
      httpGet: {path: /healthz, port: http}
      periodSeconds: 2
      failureThreshold: 60
    livenessProbe:
      httpGet: {path: /healthz, port: http}
      periodSeconds: 10
      timeoutSeconds: 3
      failureThreshold: 3
    readinessProbe:
      httpGet: {path: /readyz, port: http}
      periodSeconds: 5
      timeoutSeconds: 3
      failureThreshold: 2
    {{- end }}
    resources:
      {{- toYaml $values.resources | nindent 6 }}
    securityContext:
      {{- toYaml $root.Values.securityContext | nindent 6 }}
    volumeMounts:
      - {name: secrets, mountPath: /run/secrets/portal, readOnly: true}
      - {name: tmp, mountPath: /tmp}
      {{- if .data }}
      - {name: data, mountPath: /var/lib/portal}
      {{- end }}
      {{- if .scratch }}
      - {name: scratch, mountPath: /var/cache/portal}
      {{- end }}
volumes:
  - name: secrets
    secret:
      secretName: {{ $root.Values.secrets.existingSecret }}
      defaultMode: 0440
      items:
        {{- range $key, $variable := $root.Values.secrets.files }}
        - {key: {{ $key | quote }}, path: {{ $key | quote }}}
        {{- end }}
  - name: tmp
    emptyDir: {sizeLimit: 1Gi}
  {{- if .data }}
  - name: data
    persistentVolumeClaim:
      claimName: {{ default (printf "%s-data" (include "portal.fullname" $root)) $root.Values.persistence.existingClaim }}
  {{- end }}
  {{- if .scratch }}
  - name: scratch
    emptyDir: {sizeLimit: {{ $values.scratch.sizeLimit }}}
  {{- end }}
{{- end -}}

{{/* checkov's skips, each with its reason, as annotations of the workload. */}}
{{- define "portal.checkovSkips" -}}
{{- $skips := list -}}
{{- if not .port -}}
{{- $skips = append $skips "CKV_K8S_8=No HTTP server in this role: a process that cannot start or run exits, and Kubernetes restarts it" -}}
{{- $skips = append $skips "CKV_K8S_9=No traffic to gate: Celery takes work from the broker only when it is ready" -}}
{{- end -}}
{{- if not .root.Values.podSecurityContext.runAsUser -}}
{{- $skips = append $skips "CKV_K8S_40=The platform assigns the uid (OpenShift's restricted-v2 SCC: from the namespace's range, 1000000000 and up)" -}}
{{- end -}}
{{- range $index, $skip := $skips }}
checkov.io/skip{{ add1 $index }}: {{ $skip | quote }}
{{- end }}
{{- end -}}

{{/* A Deployment of one role. */}}
{{- define "portal.deployment" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "portal.fullname" .root }}-{{ .role }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "portal.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .role }}
  {{- with include "portal.checkovSkips" . }}
  annotations:
    {{- . | nindent 4 }}
  {{- end }}
spec:
  {{- if not .autoscaled }}
  replicas: {{ .values.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "portal.selector" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "portal.labels" .root | nindent 8 }}
        app.kubernetes.io/component: {{ .role }}
    spec:
      {{- include "portal.podSpec" . | nindent 6 }}
{{- end -}}

{{- define "portal.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "portal.fullname" .root }}-{{ .role }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "portal.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .role }}
spec:
  minAvailable: {{ .values.pdb.minAvailable }}
  selector:
    matchLabels:
      {{- include "portal.selector" . | nindent 6 }}
{{- end -}}

{{- define "portal.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "portal.fullname" .root }}-{{ .role }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "portal.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .role }}
spec:
  type: {{ .root.Values.service.type }}
  selector:
    {{- include "portal.selector" . | nindent 4 }}
  ports:
    - name: http
      port: {{ .root.Values.service.port }}
      targetPort: http
      protocol: TCP
    {{- if .root.Values.metrics.enabled }}
    - name: metrics
      port: {{ .root.Values.metrics.port }}
      targetPort: metrics
      protocol: TCP
    {{- end }}
{{- end -}}
