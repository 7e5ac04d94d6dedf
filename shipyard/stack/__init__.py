"""The local stack: real services on loopback that the pipeline talks to.

``shipyard stack up`` starts Prefect server, a CNCF Distribution registry, a Docker
Engine API (podman's compatible service unless DOCKER_HOST is set), an S3 server
(moto), a git daemon and the cluster simulator; each is health-checked, its state kept
under one directory, and one env file written for everything else to read.
``stack up --clusters N`` adds N labelled simulated clusters and a fleet file over them
(:mod:`shipyard.stack.clusters`).
"""

from shipyard.stack.model import ServiceStatus, StackLayout, StackReport
from shipyard.stack.runner import stack_down, stack_status, stack_up

__all__ = ["ServiceStatus", "StackLayout", "StackReport", "stack_down", "stack_status", "stack_up"]
