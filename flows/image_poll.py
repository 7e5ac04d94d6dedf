"""`image-poll`: the fallback trigger where registry webhooks are impossible.

Lists the image repository's tags over the OCI distribution API, picks the newest one
the tag policy allows, and starts the `deliver` deployment when it differs from the last
one this poller delivered (remembered in a Prefect Variable). Calls to one registry
share a rate limit across all runs, so many pollers cannot hammer it.
"""

from __future__ import annotations

from typing import Annotated, cast

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import FlowRun
from prefect.concurrency.sync import rate_limit
from prefect.deployments import run_deployment
from prefect.variables import Variable
from pydantic import Field

from flows.common import ensure_limit
from shipyard.core.limits import limit_name
from shipyard.core.oci import require_registry_host
from tasks.poll_tags import TagPolicy
from tasks.steps.image import poll_tags


@flow(name="image-poll")
def image_poll(
    app: str,
    image: str,
    environment: str | None = None,
    policy: TagPolicy | None = None,
    insecure: bool = False,
    deliver_deployment: str = "deliver/deliver",
    requests_per_minute: Annotated[int, Field(ge=1)] = 30,
) -> str | None:
    """Poll an image repository's tags once and start `deliver` for a new one.

    Returns the tag handed to `deliver`, or None when nothing is new.

    Args:
        app: Catalog app whose image is polled.
        image: Image repository with its registry host, no tag
            (registry.example.com/shop/cart).
        environment: Environment to deliver to; empty: the catalog's first one.
        policy: Which tags count (semver range, patterns); default: every tag.
        insecure: Plain HTTP registry (loopback only).
        deliver_deployment: Deployment to start, as flow-name/deployment-name.
        requests_per_minute: Rate limit shared by all pollers of one registry
            (at least 1).
    """
    logger = get_run_logger()
    registry, repository = require_registry_host(image)
    limiter = limit_name("registry-rate", registry)
    ensure_limit(limiter, limit=requests_per_minute, slot_decay_per_second=requests_per_minute / 60)
    rate_limit(limiter)
    tag = poll_tags(registry, repository, policy or TagPolicy(), insecure=insecure)
    if tag is None:
        logger.info("no tag of %s matches the policy", image)
        return None
    memory = f"image-poll-{app}-{environment or 'default'}".lower().replace("_", "-")
    last = Variable.get(memory, default=None)
    if last == tag:
        logger.info("%s:%s is already delivered; nothing to do", image, tag)
        return None
    parameters = {"app": app, "image": image, "tag": tag, "trigger": f"image-poll:{tag}"}
    if environment:
        parameters["environment"] = environment
    run = cast(FlowRun, run_deployment(deliver_deployment, parameters=parameters, timeout=0))
    Variable.set(memory, tag, overwrite=True)
    logger.info("started %s for %s:%s (flow run %s)", deliver_deployment, image, tag, run.id)
    return tag
