{{/*
The webhook configurations. They are not chart objects: the chart renders them into the
ConfigMap <fullname>-webhooks (webhooks-configmap.yaml) and the webhook applies them itself once
it serves (`serve --register-webhooks`), owned by the chart's ClusterRole so that uninstalling
the release deletes them. Until a pod is ready the API server calls nothing: an install whose
pods never start blocks no request.
*/}}

{{- define "spw.mutatingWebhookConfiguration" -}}
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: {{ include "spw.fullname" . }}
  labels:
    {{- include "spw.labels" . | nindent 4 }}
  {{- with (include "spw.webhookAnnotations" . | trim) }}
  {{- . | nindent 2 }}
  {{- end }}
webhooks:
  # Defaults the StorageClass of new PVCs and injects node affinity into new local PVs: both are
  # immutable afterwards, hence CREATE only.
  - name: mutate.storage-policy.io
    {{- include "spw.clientConfig" (dict "root" . "path" "/mutate") | trim | nindent 4 }}
    rules:
      - apiGroups: [""]
        apiVersions: ["v1"]
        operations: ["CREATE"]
        resources: ["persistentvolumeclaims"]
        scope: Namespaced
      - apiGroups: [""]
        apiVersions: ["v1"]
        operations: ["CREATE"]
        resources: ["persistentvolumes"]
        scope: Cluster
    # Volumes a provisioner made are never changed by /mutate (reclaimPolicy leaves them to their
    # provisioner; localVolumeNodeAffinity only fills a local or hostPath PV without required
    # node affinity): they are not sent, so a webhook outage never stalls dynamic provisioning.
    # The expression follows the webhook's own table (`rules --output json`).
    matchConditions:
      - name: not-provisioned
        expression: {{ include "spw.mutatePVCEL" . | quote }}
    # Called once more if a later mutating webhook changed the object; patches are idempotent.
    reinvocationPolicy: IfNeeded
    failurePolicy: {{ include "spw.mutatingFailurePolicy" . }}
    matchPolicy: Equivalent
    sideEffects: None
    admissionReviewVersions: ["v1"]
    timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}
    {{- include "spw.namespaceSelector" . | trim | nindent 4 }}
    {{- include "spw.objectSelector" . | trim | nindent 4 }}
{{- end }}

{{- define "spw.validatingWebhookConfiguration" -}}
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: {{ include "spw.fullname" . }}
  labels:
    {{- include "spw.labels" . | nindent 4 }}
  {{- with (include "spw.webhookAnnotations" . | trim) }}
  {{- . | nindent 2 }}
  {{- end }}
webhooks:
  - name: validate.storage-policy.io
    {{- include "spw.clientConfig" (dict "root" . "path" "/validate") | trim | nindent 4 }}
    rules:
      - apiGroups: [""]
        apiVersions: ["v1"]
        operations: ["CREATE", "UPDATE"]
        resources: ["persistentvolumeclaims"]
        scope: Namespaced
      - apiGroups: [""]
        apiVersions: ["v1"]
        operations: ["CREATE", "UPDATE"]
        resources: ["persistentvolumes"]
        scope: Cluster
      - apiGroups: ["apps"]
        apiVersions: ["v1"]
        operations: ["CREATE", "UPDATE"]
        resources: ["statefulsets"]
        scope: Namespaced
      - apiGroups: ["storage.k8s.io"]
        apiVersions: ["v1"]
        operations: ["CREATE"]
        resources: ["storageclasses"]
        scope: Cluster
    failurePolicy: {{ .Values.webhook.validating.failurePolicy }}
    matchPolicy: Equivalent
    sideEffects: None
    admissionReviewVersions: ["v1"]
    timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}
    {{- include "spw.namespaceSelector" . | trim | nindent 4 }}
    {{- include "spw.objectSelector" . | trim | nindent 4 }}
  # Pods and workloads are sent only when their pod spec declares what a rule judges (claims or
  # generic ephemeral volumes): every other pod and workload is admitted without a call. One registration
  # per pod spec path, because matchConditions apply to every rule of a registration. The kinds,
  # operations and conditions follow the webhook's own table (`storage-policy-webhook rules
  # --output json`); the chart tests compare them.
  {{- $root := . }}
  {{- range $hook := list
      (dict "name" "pods" "kinds" (list (list "" "pods")) "operations" (list "CREATE") "path" "spec")
      (dict "name" "workloads" "kinds" (list (list "apps" "deployments") (list "apps" "daemonsets") (list "apps" "replicasets") (list "batch" "jobs")) "operations" (list "CREATE" "UPDATE") "path" "spec.template.spec")
      (dict "name" "cronjobs" "kinds" (list (list "batch" "cronjobs")) "operations" (list "CREATE" "UPDATE") "path" "spec.jobTemplate.spec.template.spec") }}
  - name: {{ $hook.name }}.validate.storage-policy.io
    {{- include "spw.clientConfig" (dict "root" $root "path" "/validate") | trim | nindent 4 }}
    rules:
      {{- range $k := $hook.kinds }}
      - apiGroups: [{{ index $k 0 | quote }}]
        apiVersions: ["v1"]
        operations: {{ $hook.operations | toJson }}
        resources: [{{ index $k 1 | quote }}]
        scope: Namespaced
      {{- end }}
    matchConditions:
      - name: storage-relevant
        expression: {{ include "spw.podSpecCEL" $hook.path | quote }}
    failurePolicy: {{ $root.Values.webhook.validating.failurePolicy }}
    matchPolicy: Equivalent
    sideEffects: None
    admissionReviewVersions: ["v1"]
    timeoutSeconds: {{ $root.Values.webhook.timeoutSeconds }}
    {{- include "spw.namespaceSelector" $root | trim | nindent 4 }}
    {{- include "spw.objectSelector" $root | trim | nindent 4 }}
  {{- end }}
  # DELETE of a claim not already being deleted, or of a PV whose status is Bound: the rule
  # deleteInUse warns that it will stay Terminating (pvc-protection, pv-protection) while pods
  # use it. Warnings only, so failurePolicy is always Ignore: a webhook outage never blocks a
  # delete (nor a namespace's deletion, which deletes its claims). Every other DELETE is never
  # sent. The condition follows the webhook's own table (`rules --output json`).
  - name: deletes.validate.storage-policy.io
    {{- include "spw.clientConfig" (dict "root" . "path" "/validate") | trim | nindent 4 }}
    rules:
      - apiGroups: [""]
        apiVersions: ["v1"]
        operations: ["DELETE"]
        resources: ["persistentvolumeclaims"]
        scope: Namespaced
      - apiGroups: [""]
        apiVersions: ["v1"]
        operations: ["DELETE"]
        resources: ["persistentvolumes"]
        scope: Cluster
    matchConditions:
      - name: still-protected
        expression: {{ include "spw.deleteCEL" . | quote }}
    failurePolicy: Ignore
    matchPolicy: Equivalent
    sideEffects: None
    admissionReviewVersions: ["v1"]
    timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}
    {{- include "spw.namespaceSelector" . | trim | nindent 4 }}
    {{- include "spw.objectSelector" . | trim | nindent 4 }}
{{- end }}
