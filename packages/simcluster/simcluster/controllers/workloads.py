"""The workload controllers, in the order the cluster starts them.

Each controller lives in its own module (deployment, replicaset, statefulset, daemonset,
job, cronjob, endpointslices, hpa); this module only assembles them for
``simcluster.cluster``.
"""

from __future__ import annotations

from simcluster.config import SimConfig
from simcluster.controllers.base import Controller
from simcluster.controllers.cronjob import CronJobController
from simcluster.controllers.daemonset import DaemonSetController
from simcluster.controllers.deployment import DeploymentController
from simcluster.controllers.endpointslices import EndpointSliceController
from simcluster.controllers.hpa import HorizontalPodAutoscalerController
from simcluster.controllers.job import JobController
from simcluster.controllers.replicaset import ReplicaSetController
from simcluster.controllers.statefulset import StatefulSetController
from simcluster.store import Store


def all_controllers(store: Store, config: SimConfig) -> list[Controller]:
    """One of each workload controller, sharing ``store``."""
    return [
        DeploymentController(store, config),
        ReplicaSetController(store, config),
        StatefulSetController(store, config),
        DaemonSetController(store, config),
        JobController(store, config),
        CronJobController(store, config),
        EndpointSliceController(store, config),
        HorizontalPodAutoscalerController(store, config),
    ]
