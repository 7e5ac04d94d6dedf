"""GitOps operators for the simulated cluster: an Argo CD-like and a Flux-like reconciler.

They run like real operators - threads that talk to the API server only through the
Kubernetes client (watches of their custom resources), read the real git repository at
the requested revision, render the path, server-side apply it and report status in the
same fields the real controllers use - so Shipyard's sync drivers are tested against the
wire format they meet in production.
"""
