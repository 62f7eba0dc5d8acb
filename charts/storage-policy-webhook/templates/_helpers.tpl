{{/* Names, labels and the values that several templates must agree on. */}}

{{- define "spw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "spw.fullname" -}}
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

{{- define "spw.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "spw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "spw.labels" -}}
helm.sh/chart: {{ include "spw.chart" . }}
{{ include "spw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: admission-webhook
{{- end }}

{{- define "spw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "spw.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "spw.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Secret holding tls.crt / tls.key (and ca.crt except with existingSecret). */}}
{{- define "spw.tlsSecretName" -}}
{{- if eq .Values.certs.mode "existingSecret" }}
{{- .Values.certs.existingSecret.name }}
{{- else }}
{{- printf "%s-tls" (include "spw.fullname" .) }}
{{- end }}
{{- end }}

{{/* The cert-manager Certificate whose CA is injected into the webhook configurations. */}}
{{- define "spw.certificateName" -}}
{{- printf "%s-tls" (include "spw.fullname" .) }}
{{- end }}

{{/* Every DNS name the API server may use for the Service. */}}
{{- define "spw.dnsNames" -}}
{{- $svc := include "spw.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{/*
Namespaces the webhook never sees: the release namespace (the webhook must be able to start
while it is down), kube-system (control-plane bootstrap) and the configured extras. Sorted and
de-duplicated, as a JSON list.
*/}}
{{- define "spw.excludedNamespaces" -}}
{{- list .Release.Namespace "kube-system" | concat .Values.webhook.namespaceSelector.excludeNamespaces | uniq | sortAlpha | toJson }}
{{- end }}

{{/*
Generated certificates (certs.mode=generate). Templates are rendered one by one, so the CA and
certificate are made once per render and cached in .Values: the Secret and both webhook
configurations must carry the same CA. An existing Secret (lookup) is reused, so upgrades keep
the CA; offline renders (helm template, lint) see no cluster and generate a fresh pair.
Returns {"ca": b64, "crt": b64, "key": b64}.
*/}}
{{- define "spw.generatedCerts" -}}
{{- if not (hasKey .Values "__spwGeneratedCerts") }}
{{- $secretName := include "spw.tlsSecretName" . }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $secretName }}
{{- $certs := dict }}
{{- if and $existing $existing.data (index $existing.data "ca.crt") (index $existing.data "tls.crt") (index $existing.data "tls.key") }}
{{- $certs = dict "ca" (index $existing.data "ca.crt") "crt" (index $existing.data "tls.crt") "key" (index $existing.data "tls.key") }}
{{- else }}
{{- $days := int .Values.certs.generate.validityDays }}
{{- $ca := genCA (printf "%s-ca" (include "spw.fullname" .)) $days }}
{{- $dns := include "spw.dnsNames" . | fromJsonArray }}
{{- $cert := genSignedCert (index $dns 2) nil $dns $days $ca }}
{{- $certs = dict "ca" ($ca.Cert | b64enc) "crt" ($cert.Cert | b64enc) "key" ($cert.Key | b64enc) }}
{{- end }}
{{- $_ := set .Values "__spwGeneratedCerts" $certs }}
{{- end }}
{{- index .Values "__spwGeneratedCerts" | toJson }}
{{- end }}

{{/* clientConfig.caBundle line, or nothing when cert-manager injects it. */}}
{{- define "spw.caBundle" -}}
{{- if eq .Values.certs.mode "generate" }}
caBundle: {{ (include "spw.generatedCerts" . | fromJson).ca }}
{{- else if eq .Values.certs.mode "existingSecret" }}
caBundle: {{ .Values.certs.caBundle }}
{{- end }}
{{- end }}

{{/* Annotations shared by both webhook configurations. */}}
{{- define "spw.webhookAnnotations" -}}
{{- $ann := deepCopy .Values.webhook.annotations }}
{{- if eq .Values.certs.mode "certManager" }}
{{- $_ := set $ann "cert-manager.io/inject-ca-from" (printf "%s/%s" .Release.Namespace (include "spw.certificateName" .)) }}
{{- end }}
{{- if $ann }}
annotations:
  {{- toYaml $ann | nindent 2 }}
{{- end }}
{{- end }}

{{- define "spw.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values: {{ include "spw.excludedNamespaces" . }}
    {{- with .Values.webhook.namespaceSelector.extraMatchExpressions }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{- define "spw.objectSelector" -}}
{{- if .Values.webhook.objectOptOut.enabled }}
objectSelector:
  matchExpressions:
    - key: storage-policy.io/ignore
      operator: NotIn
      values: ["true"]
{{- else }}
objectSelector: {}
{{- end }}
{{- end }}

{{/*
webhook.url set: the webhook runs outside the cluster (a process on the control-plane host, a VM,
the end-to-end suite) and is called at that URL with certs.caBundle; no Deployment, Service,
PodDisruptionBudget, NetworkPolicy or certificate objects are rendered.
*/}}
{{- define "spw.external" -}}
{{- if .Values.webhook.url }}true{{ end }}
{{- end }}

{{- define "spw.clientConfig" -}}
clientConfig:
  {{- if include "spw.external" .root }}
  {{- if not .root.Values.certs.caBundle }}
  {{- fail "webhook.url needs certs.caBundle: the base64 PEM CA that signed the external webhook's certificate" }}
  {{- end }}
  url: {{ printf "%s%s" (trimSuffix "/" .root.Values.webhook.url) .path | quote }}
  caBundle: {{ .root.Values.certs.caBundle }}
  {{- else }}
  service:
    name: {{ include "spw.fullname" .root }}
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: {{ .root.Values.service.port }}
  {{- with (include "spw.caBundle" .root | trim) }}
  {{- . | nindent 2 }}
  {{- end }}
  {{- end }}
{{- end }}

{{/* The policy file: values.policy plus the namespaces the webhook never sees. */}}
{{- define "spw.policy" -}}
{{- $policy := deepCopy .Values.policy }}
{{- $exemptions := default (dict) $policy.exemptions }}
{{- $namespaces := default (list) $exemptions.namespaces }}
{{- $namespaces = concat $namespaces (include "spw.excludedNamespaces" . | fromJsonArray) | uniq }}
{{- $_ := set $exemptions "namespaces" $namespaces }}
{{- $_ := set $policy "exemptions" $exemptions }}
{{- toYaml $policy }}
{{- end }}

{{/*
CEL: the pod spec at the given path (below `spec`) declares generic ephemeral volumes. Every
optional parent is tested with has(), so the expression never errors. Mirrors PodFilter::cel.
*/}}
{{- define "spw.ephemeralVolumesCEL" -}}
{{- $guards := list -}}
{{- $at := "object.spec" -}}
{{- range $seg := rest (splitList "." .) -}}
{{- $at = printf "%s.%s" $at $seg -}}
{{- $guards = append $guards (printf "has(%s)" $at) -}}
{{- end -}}
{{- $full := printf "object.%s" . -}}
{{- $guards = append $guards (printf "has(%s.volumes)" $full) -}}
{{- $guards = append $guards (printf "%s.volumes.exists(v, has(v.ephemeral))" $full) -}}
{{- join " && " $guards -}}
{{- end }}

{{/*
CEL: the pod spec at the given path mounts a claim by name (rules sharedClaims, missingClaims;
nodeNameWaitForFirstConsumer's "nodeName with claims or ephemeral volumes" falls within this and
the ephemeral-volumes condition). Mirrors PodFilter::cel.
*/}}
{{- define "spw.claimsByNameCEL" -}}
{{- $guards := list -}}
{{- $at := "object.spec" -}}
{{- range $seg := rest (splitList "." .) -}}
{{- $at = printf "%s.%s" $at $seg -}}
{{- $guards = append $guards (printf "has(%s)" $at) -}}
{{- end -}}
{{- $full := printf "object.%s" . -}}
{{- $guards = append $guards (printf "has(%s.volumes)" $full) -}}
{{- $guards = append $guards (printf "%s.volumes.exists(v, has(v.persistentVolumeClaim))" $full) -}}
{{- join " && " $guards -}}
{{- end }}

{{/*
CEL: the pod spec at the given path mounts claims or generic ephemeral volumes (rule
volumeTopology; it covers the two filters above). Mirrors PodFilter::cel.
*/}}
{{- define "spw.mountsClaimsCEL" -}}
{{- $guards := list -}}
{{- $at := "object.spec" -}}
{{- range $seg := rest (splitList "." .) -}}
{{- $at = printf "%s.%s" $at $seg -}}
{{- $guards = append $guards (printf "has(%s)" $at) -}}
{{- end -}}
{{- $full := printf "object.%s" . -}}
{{- $guards = append $guards (printf "has(%s.volumes)" $full) -}}
{{- $guards = append $guards (printf "%s.volumes.exists(v, has(v.persistentVolumeClaim) || has(v.ephemeral))" $full) -}}
{{- join " && " $guards -}}
{{- end }}

{{/*
CEL: a pod spec some rule judges, the filters joined as registry::registrations joins them (a
filter another covers is left out: mounting claims covers ephemeral volumes and nodeName with
claims).
*/}}
{{- define "spw.podSpecCEL" -}}
{{- include "spw.mountsClaimsCEL" . -}}
{{- end }}

{{/* The webhook configurations the webhook registers, as one JSON List. */}}
{{- define "spw.webhookConfigurations" -}}
{{- $items := list }}
{{- if .Values.webhook.mutating.enabled }}
{{- $items = append $items (include "spw.mutatingWebhookConfiguration" . | fromYaml) }}
{{- end }}
{{- if .Values.webhook.validating.enabled }}
{{- $items = append $items (include "spw.validatingWebhookConfiguration" . | fromYaml) }}
{{- end }}
{{- dict "apiVersion" "v1" "kind" "List" "items" $items | toPrettyJson }}
{{- end }}

{{/*
CEL for the mutating registration: everything but a PersistentVolume that a provisioner made
(annotation pv.kubernetes.io/provisioned-by naming an external provisioner) and that no mutating
rule can change (localVolumeNodeAffinity fills only a local or hostPath PV without required node
affinity; reclaimPolicy never touches a provisioned PV). Mirrors registry::NOT_PROVISIONED_CEL.
*/}}
{{- define "spw.mutatePVCEL" -}}
{{- $a := "object.metadata.annotations" -}}
{{- $p := printf "%s['pv.kubernetes.io/provisioned-by']" $a -}}
request.resource.resource != 'persistentvolumes' || !(has({{ $a }}) && 'pv.kubernetes.io/provisioned-by' in {{ $a }} && {{ $p }} != '' && !{{ $p }}.startsWith('kubernetes.io/')) || ((has(object.spec.local) || has(object.spec.hostPath)) && !(has(object.spec.nodeAffinity) && has(object.spec.nodeAffinity.required)))
{{- end }}

{{/* The DELETEs sent to /validate (registry DELETE_CEL): a claim not already being deleted, a
PV not already being deleted whose status is Bound. A DELETE has no object: only oldObject. */}}
{{- define "spw.deleteCEL" -}}
!has(oldObject.metadata.deletionTimestamp) && (request.resource.resource == 'persistentvolumeclaims' || (has(oldObject.status) && has(oldObject.status.phase) && oldObject.status.phase == 'Bound'))
{{- end }}

{{/* The policy rules, as the webhook's registry lists them (`rules --output json`). Generated
from src/policy/registry.rs: do not edit between the rule-keys markers; after adding a rule run
`UPDATE_CHART=1 cargo test --test chart_rules` (tests/chart_rules.rs). */}}
{{/* rule-keys:start */}}
{{- define "spw.ruleKeys" -}}
{{- list "defaultStorageClass" "localVolumeNodeAffinity" "accessModes" "volumeSize" "reclaimPolicy" "claimRefNamespace" "localVolumeNodes" "unknownClass" "nodeNameWaitForFirstConsumer" "willBind" "volumeName" "sharedClaims" "missingClaims" "dataSources" "deleteInUse" "volumeTopology" "missingProvisioner" | toJson }}
{{- end }}
{{/* rule-keys:end */}}

{{/* Every rule in audit mode whatever the policy says (binary flag --audit-only): auditOnly, or
the deprecated dryRun. */}}
{{- define "spw.auditOnly" -}}
{{- if or .Values.auditOnly .Values.dryRun }}true{{ end }}
{{- end }}

{{/* The mode each rule runs in, as the webhook resolves it: auditOnly, else the rule's own
mode, else policy.mode. A JSON object rule -> mode. */}}
{{- define "spw.effectiveModes" -}}
{{- $out := dict }}
{{- $rules := default (dict) .Values.policy.rules }}
{{- $default := default "enforce" .Values.policy.mode }}
{{- range $key := include "spw.ruleKeys" . | fromJsonArray }}
{{- $rule := default (dict) (get $rules $key) }}
{{- $mode := default $default (get $rule "mode") }}
{{- if include "spw.auditOnly" $ }}{{ if ne $mode "off" }}{{ $mode = "audit" }}{{ end }}{{ end }}
{{- $_ := set $out $key $mode }}
{{- end }}
{{- $out | toJson }}
{{- end }}

{{/* "true" when some rule enforces (can deny or mutate). */}}
{{- define "spw.enforcing" -}}
{{- range $k, $m := include "spw.effectiveModes" . | fromJson }}{{ if eq $m "enforce" }}true{{ end }}{{ end }}
{{- end }}

{{/* webhook.mutating.failurePolicy, or by default Fail when a rule enforces (a skipped
mutation is permanent) and Ignore while everything audits (nothing would be mutated). */}}
{{- define "spw.mutatingFailurePolicy" -}}
{{- if .Values.webhook.mutating.failurePolicy }}{{ .Values.webhook.mutating.failurePolicy }}
{{- else if include "spw.enforcing" . }}Fail
{{- else }}Ignore
{{- end }}
{{- end }}
