"""Compact OpenAPI v3 schemas for the built-in kinds (for ``kubectl explain``).

Hand-written and short: the fields the simulator's controllers read and kubectl users
look up, each with a one-line description. Kinds without a schema here get a generic
object (apiVersion, kind, metadata, spec, status) that preserves unknown fields.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]

PREFIX = "io.k8s.api."


def _s(desc: str, fmt: str = "") -> JSON:
    return {"type": "string", "description": desc, **({"format": fmt} if fmt else {})}


def _i(desc: str) -> JSON:
    return {"type": "integer", "format": "int32", "description": desc}


def _b(desc: str) -> JSON:
    return {"type": "boolean", "description": desc}


def _m(desc: str) -> JSON:
    return {"type": "object", "additionalProperties": {"type": "string"}, "description": desc}


def _q(desc: str) -> JSON:
    quantity = {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.api.resource.Quantity"}
    return {"type": "object", "additionalProperties": quantity, "description": desc}


def _ios(desc: str) -> JSON:
    return {"x-kubernetes-int-or-string": True, "description": desc}


def _ref(name: str, desc: str) -> JSON:
    return {"allOf": [{"$ref": f"#/components/schemas/{name}"}], "description": desc}


def _arr(name: str, desc: str, key: str = "") -> JSON:
    out: JSON = {
        "type": "array",
        "items": {"allOf": [{"$ref": f"#/components/schemas/{name}"}], "default": {}},
        "description": desc,
    }
    if key:
        out.update({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [key]})
    return out


def _strs(desc: str) -> JSON:
    return {"type": "array", "items": {"type": "string", "default": ""}, "description": desc}


def _obj(desc: str, props: JSON, required: tuple[str, ...] = ()) -> JSON:
    out: JSON = {"type": "object", "description": desc, "properties": props}
    if required:
        out["required"] = list(required)
    return out


META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
SELECTOR = "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"
CORE = PREFIX + "core.v1."
APPS = PREFIX + "apps.v1."
BATCH = PREFIX + "batch.v1."


def _kind(desc: str, spec: str | None, status: str | None, extra: JSON | None = None) -> JSON:
    props: JSON = {
        "apiVersion": _s("APIVersion defines the versioned schema of this representation."),
        "kind": _s("Kind is a string value representing the REST resource."),
        "metadata": _ref(META, "Standard object's metadata."),
    }
    if spec:
        props["spec"] = _ref(spec, "Specification of the desired behavior.")
    if status:
        props["status"] = _ref(status, "Most recently observed status. Read-only.")
    props.update(extra or {})
    return _obj(desc, props)


def _meta_schemas() -> JSON:
    return {
        "io.k8s.apimachinery.pkg.api.resource.Quantity": {
            "x-kubernetes-int-or-string": True,
            "description": "A fixed-point number: 100m, 1Gi, 2.",
        },
        META: _obj(
            "Metadata that all persisted resources must have.",
            {
                "name": _s("Name must be unique within a namespace."),
                "generateName": _s("Prefix for a server-generated name."),
                "namespace": _s("The namespace the object is in."),
                "uid": _s("Unique identifier, set by the server."),
                "resourceVersion": _s("Opaque version, for optimistic concurrency."),
                "generation": {
                    "type": "integer",
                    "format": "int64",
                    "description": "Spec version.",
                },
                "creationTimestamp": _s("When the object was created.", "date-time"),
                "deletionTimestamp": _s("When the object will be deleted.", "date-time"),
                "labels": _m("Map of string keys and values to organize and select objects."),
                "annotations": _m("Unstructured key value map stored with a resource."),
                "ownerReferences": {
                    "type": "array",
                    "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "description": "Objects this object depends on.",
                },
                "finalizers": _strs("Must be empty before the object is deleted."),
                "managedFields": {
                    "type": "array",
                    "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "description": "Which manager owns which fields (server-side apply).",
                },
            },
        ),
        SELECTOR: _obj(
            "A label query over a set of resources.",
            {
                "matchLabels": _m("Labels that must all match."),
                "matchExpressions": {
                    "type": "array",
                    "items": _obj(
                        "A selector requirement.",
                        {
                            "key": _s("The label key."),
                            "operator": _s("In, NotIn, Exists or DoesNotExist."),
                            "values": _strs("Values for In and NotIn."),
                        },
                        ("key", "operator"),
                    ),
                    "description": "Label selector requirements, ANDed.",
                },
            },
        ),
    }


def _core_schemas() -> JSON:
    probe = _obj(
        "A health check performed against a container.",
        {
            "exec": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "description": "Run a command in the container.",
            },
            "httpGet": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "description": "An HTTP GET request.",
            },
            "tcpSocket": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "description": "A TCP connection.",
            },
            "initialDelaySeconds": _i("Seconds after start before probes begin."),
            "periodSeconds": _i("How often to probe. Default 10, minimum 1."),
            "timeoutSeconds": _i("Seconds after which the probe times out. Default 1."),
            "successThreshold": _i("Consecutive successes to be considered successful. Default 1."),
            "failureThreshold": _i("Consecutive failures to be considered failed. Default 3."),
        },
    )
    return {
        CORE + "Container": _obj(
            "A single application container to run within a pod.",
            {
                "name": _s("Name of the container (a DNS_LABEL), unique in the pod."),
                "image": _s("Container image name."),
                "imagePullPolicy": _s('Always, Never or IfNotPresent. "Always" for :latest.'),
                "command": _strs("Entrypoint array, not run in a shell."),
                "args": _strs("Arguments to the entrypoint."),
                "workingDir": _s("Working directory."),
                "ports": _arr(CORE + "ContainerPort", "Ports to expose.", "containerPort"),
                "env": _arr(CORE + "EnvVar", "Environment variables to set.", "name"),
                "envFrom": {
                    "type": "array",
                    "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "description": "Sources of environment variables.",
                },
                "resources": _ref(CORE + "ResourceRequirements", "Compute resources."),
                "volumeMounts": _arr(CORE + "VolumeMount", "Volumes to mount.", "mountPath"),
                "livenessProbe": _ref(CORE + "Probe", "Restart the container when it fails."),
                "readinessProbe": _ref(CORE + "Probe", "Remove from endpoints when it fails."),
                "startupProbe": _ref(CORE + "Probe", "Other probes wait until it succeeds."),
                "securityContext": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "description": "Security options.",
                },
                "terminationMessagePath": _s("Where the termination message is written."),
                "terminationMessagePolicy": _s("File or FallbackToLogsOnError."),
            },
            ("name",),
        ),
        CORE + "ContainerPort": _obj(
            "A network port in a single container.",
            {
                "name": _s("An IANA_SVC_NAME, unique in the pod."),
                "containerPort": _i("Port number on the pod's IP address."),
                "protocol": _s('UDP, TCP, or SCTP. Defaults to "TCP".'),
                "hostPort": _i("Port number on the host."),
            },
            ("containerPort",),
        ),
        CORE + "EnvVar": _obj(
            "An environment variable.",
            {
                "name": _s("Name of the variable."),
                "value": _s("Its value."),
                "valueFrom": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "description": "Source for the value.",
                },
            },
            ("name",),
        ),
        CORE + "ResourceRequirements": _obj(
            "Compute resource requirements.",
            {
                "limits": _q("Maximum amount of compute resources allowed."),
                "requests": _q("Minimum amount of compute resources required."),
            },
        ),
        CORE + "VolumeMount": _obj(
            "A mounting of a volume within a container.",
            {
                "name": _s("The name of a volume of the pod."),
                "mountPath": _s("Path within the container."),
                "subPath": _s("Path within the volume."),
                "readOnly": _b("Mounted read-only if true."),
            },
            ("name", "mountPath"),
        ),
        CORE + "Volume": _obj(
            "A named volume in a pod.",
            {
                "name": _s("Volume's name, a DNS_LABEL unique in the pod."),
                "configMap": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "description": "A ConfigMap that should populate this volume.",
                },
                "secret": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "description": "A Secret that should populate this volume.",
                },
                "persistentVolumeClaim": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "description": "A PersistentVolumeClaim to mount.",
                },
                "emptyDir": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "description": "A temporary directory sharing the pod's lifetime.",
                },
            },
            ("name",),
        ),
        CORE + "Probe": probe,
        CORE + "PodSpec": _obj(
            "Specification of a pod.",
            {
                "containers": _arr(CORE + "Container", "Containers in the pod.", "name"),
                "initContainers": _arr(
                    CORE + "Container", "Run in order before containers.", "name"
                ),
                "volumes": _arr(CORE + "Volume", "Volumes containers may mount.", "name"),
                "restartPolicy": _s("Always, OnFailure or Never. Default Always."),
                "serviceAccountName": _s("The ServiceAccount to run the pod as."),
                "nodeSelector": _m("Labels a node must have for the pod to fit."),
                "nodeName": _s("The node the pod is scheduled onto."),
                "affinity": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "description": "Scheduling constraints.",
                },
                "tolerations": {
                    "type": "array",
                    "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "description": "Tolerations of node taints.",
                },
                "terminationGracePeriodSeconds": {
                    "type": "integer",
                    "format": "int64",
                    "description": "Grace period. Default 30.",
                },
                "dnsPolicy": _s("ClusterFirst, Default, None or ClusterFirstWithHostNet."),
                "schedulerName": _s("The scheduler to dispatch the pod."),
                "imagePullSecrets": {
                    "type": "array",
                    "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "description": "Secrets for pulling images.",
                },
            },
            ("containers",),
        ),
        CORE + "PodTemplateSpec": _obj(
            "Data a pod should have when created from a template.",
            {
                "metadata": _ref(META, "Standard object's metadata."),
                "spec": _ref(CORE + "PodSpec", "Specification of the desired pod."),
            },
        ),
        CORE + "PodStatus": _obj(
            "Most recently observed status of the pod.",
            {
                "phase": _s("Pending, Running, Succeeded, Failed or Unknown."),
                "conditions": {
                    "type": "array",
                    "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "description": "Current service state of the pod.",
                },
                "podIP": _s("IP address allocated to the pod."),
                "hostIP": _s("IP address of the host the pod runs on."),
                "containerStatuses": {
                    "type": "array",
                    "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "description": "One per container.",
                },
            },
        ),
        CORE + "ServiceSpec": _obj(
            "The attributes a user creates on a service.",
            {
                "selector": _m("Route traffic to pods with these labels."),
                "ports": _arr(CORE + "ServicePort", "Ports exposed by this service."),
                "type": _s("ExternalName, ClusterIP, NodePort or LoadBalancer."),
                "clusterIP": _s("IP address of the service, usually assigned randomly."),
                "sessionAffinity": _s("ClientIP or None. Default None."),
            },
        ),
        CORE + "ServicePort": _obj(
            "A port of a service.",
            {
                "name": _s("Name of this port within the service."),
                "protocol": _s('TCP, UDP or SCTP. Default "TCP".'),
                "port": _i("The port exposed by this service."),
                "targetPort": _ios("Number or name of the port on the pods."),
                "nodePort": _i("The port on each node (NodePort, LoadBalancer)."),
            },
            ("port",),
        ),
    }


def _apps_batch_schemas() -> JSON:
    sel = _ref(SELECTOR, "Label selector for pods. Must match the template's labels.")
    template = _ref(CORE + "PodTemplateSpec", "Template of the pods to create.")
    replicas = _i("Number of desired pods. Defaults to 1.")
    status = _obj(
        "Most recently observed status.",
        {
            "replicas": _i("Total number of pods targeted."),
            "readyReplicas": _i("Pods with a Ready condition."),
            "availableReplicas": _i("Pods ready for at least minReadySeconds."),
            "updatedReplicas": _i("Pods with the desired template."),
            "observedGeneration": {
                "type": "integer",
                "format": "int64",
                "description": "Generation observed by the controller.",
            },
            "conditions": {
                "type": "array",
                "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "description": "Latest available observations.",
            },
        },
    )
    job_spec = _obj(
        "Description of a job.",
        {
            "template": template,
            "parallelism": _i("Maximum pods running at any time."),
            "completions": _i("Successful pods needed to finish."),
            "backoffLimit": _i("Retries before marking the job failed. Default 6."),
            "activeDeadlineSeconds": {
                "type": "integer",
                "format": "int64",
                "description": "Time limit for the job.",
            },
            "ttlSecondsAfterFinished": _i("Delete the job this long after it finishes."),
            "completionMode": _s("NonIndexed or Indexed."),
            "suspend": _b("Suspend the job."),
            "selector": sel,
        },
        ("template",),
    )
    return {
        APPS + "DeploymentSpec": _obj(
            "The desired behavior of a Deployment.",
            {
                "replicas": replicas,
                "selector": sel,
                "template": template,
                "strategy": _obj(
                    "How to replace existing pods with new ones.",
                    {
                        "type": _s("Recreate or RollingUpdate. Default RollingUpdate."),
                        "rollingUpdate": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                            "description": "maxSurge and maxUnavailable.",
                        },
                    },
                ),
                "minReadySeconds": _i("Seconds a new pod must be ready to be available."),
                "revisionHistoryLimit": _i("Old ReplicaSets to keep. Default 10."),
                "progressDeadlineSeconds": _i("Seconds before the deployment is failed."),
                "paused": _b("The deployment is paused."),
            },
            ("selector", "template"),
        ),
        APPS + "WorkloadStatus": status,
        APPS + "ReplicaSetSpec": _obj(
            "The specification of a ReplicaSet.",
            {
                "replicas": replicas,
                "selector": sel,
                "template": template,
                "minReadySeconds": _i("Seconds a new pod must be ready to be available."),
            },
            ("selector",),
        ),
        APPS + "StatefulSetSpec": _obj(
            "The specification of a StatefulSet.",
            {
                "replicas": replicas,
                "selector": sel,
                "template": template,
                "serviceName": _s("The governing service."),
                "podManagementPolicy": _s("OrderedReady or Parallel."),
                "updateStrategy": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "description": "RollingUpdate or OnDelete.",
                },
                "volumeClaimTemplates": {
                    "type": "array",
                    "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "description": "Claims each pod references.",
                },
            },
            ("selector", "template"),
        ),
        APPS + "DaemonSetSpec": _obj(
            "The specification of a DaemonSet.",
            {
                "selector": sel,
                "template": template,
                "updateStrategy": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "description": "RollingUpdate or OnDelete.",
                },
            },
            ("selector", "template"),
        ),
        BATCH + "JobSpec": job_spec,
        BATCH + "JobStatus": _obj(
            "The current state of a Job.",
            {
                "active": _i("Pending and running pods."),
                "succeeded": _i("Succeeded pods."),
                "failed": _i("Failed pods."),
                "startTime": _s("When the job started.", "date-time"),
                "completionTime": _s("When the job completed.", "date-time"),
                "conditions": {
                    "type": "array",
                    "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "description": "Latest available observations.",
                },
            },
        ),
        BATCH + "CronJobSpec": _obj(
            "What a cron job runs and when.",
            {
                "schedule": _s("The schedule in Cron format."),
                "timeZone": _s("Time zone name for the schedule."),
                "concurrencyPolicy": _s("Allow, Forbid or Replace. Default Allow."),
                "suspend": _b("Suspend subsequent executions."),
                "startingDeadlineSeconds": {
                    "type": "integer",
                    "format": "int64",
                    "description": "Deadline for a missed start.",
                },
                "successfulJobsHistoryLimit": _i("Finished jobs to keep. Default 3."),
                "failedJobsHistoryLimit": _i("Failed jobs to keep. Default 1."),
                "jobTemplate": _obj(
                    "The job that will be created.",
                    {
                        "metadata": _ref(META, "Standard object's metadata."),
                        "spec": _ref(BATCH + "JobSpec", "Specification of the job."),
                    },
                ),
            },
            ("schedule", "jobTemplate"),
        ),
    }


# (group, version, kind) -> (spec schema, status schema, extra top-level properties)
KINDS: dict[tuple[str, str, str], tuple[str | None, str | None, JSON]] = {
    ("", "v1", "Pod"): (CORE + "PodSpec", CORE + "PodStatus", {}),
    ("", "v1", "Service"): (CORE + "ServiceSpec", None, {}),
    ("", "v1", "ConfigMap"): (
        None,
        None,
        {
            "data": _m("Configuration data (UTF-8 values)."),
            "binaryData": {
                "type": "object",
                "additionalProperties": {"type": "string", "format": "byte"},
                "description": "Binary data (base64).",
            },
            "immutable": _b("Data cannot be updated if true."),
        },
    ),
    ("", "v1", "Secret"): (
        None,
        None,
        {
            "data": {
                "type": "object",
                "additionalProperties": {"type": "string", "format": "byte"},
                "description": "Secret data, base64-encoded values.",
            },
            "stringData": _m("Write-only plain-text data, merged into data."),
            "type": _s("Used to facilitate programmatic handling of secret data."),
            "immutable": _b("Data cannot be updated if true."),
        },
    ),
    ("", "v1", "Namespace"): (
        None,
        None,
        {
            "spec": _obj("Namespace spec.", {"finalizers": _strs("Finalizers run on deletion.")}),
            "status": _obj("Namespace status.", {"phase": _s("Active or Terminating.")}),
        },
    ),
    ("", "v1", "ServiceAccount"): (
        None,
        None,
        {
            "automountServiceAccountToken": _b("Mount the API token into pods."),
            "secrets": {
                "type": "array",
                "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "description": "Secrets pods may use.",
            },
        },
    ),
    ("apps", "v1", "Deployment"): (APPS + "DeploymentSpec", APPS + "WorkloadStatus", {}),
    ("apps", "v1", "ReplicaSet"): (APPS + "ReplicaSetSpec", APPS + "WorkloadStatus", {}),
    ("apps", "v1", "StatefulSet"): (APPS + "StatefulSetSpec", APPS + "WorkloadStatus", {}),
    ("apps", "v1", "DaemonSet"): (APPS + "DaemonSetSpec", None, {}),
    ("batch", "v1", "Job"): (BATCH + "JobSpec", BATCH + "JobStatus", {}),
    ("batch", "v1", "CronJob"): (BATCH + "CronJobSpec", None, {}),
}

SHARED: JSON = {**_meta_schemas(), **_core_schemas(), **_apps_batch_schemas()}


def schema_name(group: str, version: str, kind: str) -> str:
    """The components/schemas name, as the real server spells it."""
    g = {"": "core", "apps": "apps", "batch": "batch"}.get(group, group.split(".")[0])
    if group.endswith(".k8s.io") or group in ("", "apps", "batch", "autoscaling", "policy"):
        return f"{PREFIX}{g}.{version}.{kind}"
    reverse = ".".join(reversed(group.split(".")))
    return f"{reverse}.{version}.{kind}"


def kind_schema(group: str, version: str, kind: str) -> JSON:
    """The schema of one built-in kind (a generic object when none is written here)."""
    spec, status, extra = KINDS.get((group, version, kind), (None, None, None))
    if extra is None:
        desc = f"{kind} (schema not modelled by the simulator: any fields are accepted)."
        out = _kind(desc, None, None)
        out["properties"]["spec"] = {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "description": "Specification.",
        }
        out["properties"]["status"] = {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "description": "Status.",
        }
        return out
    return _kind(f"{kind} ({group or 'core'}/{version}).", spec, status, extra)


def refs(schema: Any, found: set[str]) -> None:
    """Collect the component names ``schema`` refers to, transitively."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[-1]
            if name not in found and name in SHARED:
                found.add(name)
                refs(SHARED[name], found)
        for v in schema.values():
            refs(v, found)
    elif isinstance(schema, list):
        for v in schema:
            refs(v, found)
