"""Registry webhooks in, ``registry.image.pushed`` Prefect events out.

``parse`` modules (one per registry) are pure; :mod:`shipyard.bridge.server` adds
authentication, dedupe, the durable spool and forwarding to the Prefect API.
"""
