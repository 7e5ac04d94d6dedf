"""The demo's files, as pure functions of the stack's addresses (no I/O here)."""

from __future__ import annotations

APP = "cart"
IMAGE_PATH = "shop/cart"
SOURCE_REPO = "shop-cart"
NAMESPACES = {"dev": "shop-dev", "prod": "shop-prod"}
FLEET_LABEL = "fleet"  # the label the demo's prod fleet selects cluster blocks by


def app_files(registry: str, version: str = "1") -> dict[str, str]:
    """The sample app: a static page served by busybox httpd."""
    return {
        "Dockerfile": (
            f"FROM {registry}/shipyard/busybox:1\n"
            "COPY index.html /www/index.html\n"
            'RUN echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ)" > /www/build.txt\n'
            "USER 10001\n"
            'CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n'
        ),
        "index.html": f"<h1>cart v{version}</h1>\n",
        ".trivyignore": "# accepted findings, with an expiry: ID exp:YYYY-MM-DD\n",
    }


def catalog(registry: str, git_url: str, fleet: str | None = None) -> str:
    """shipyard-catalog.yaml for the demo app: dev (apply) then protected prod.

    With ``fleet`` (the stack runs clusters), prod is a fleet: the cluster blocks
    labelled ``fleet: <fleet>``, the canary first, then the rest in one wave.
    """
    target = (
        f"""\
        fleet:
          selector: {{matchLabels: {{{FLEET_LABEL}: {fleet}}}}}
          waves:
            - {{name: canary, selector: {{matchLabels: {{tier: canary}}}}}}
            - {{name: rest}}
"""
        if fleet
        else ""
    )
    return f"""\
# Shipyard app catalog: which apps exist and how each environment is delivered.
apiVersion: shipyard.dev/v1
apps:
  - name: {APP}
    image: {registry}/{IMAGE_PATH}
    source:
      repo: {git_url}/{SOURCE_REPO}.git
      dockerfile: Dockerfile
    environments:
      - name: dev
        path: envs/dev/{APP}
        namespace: {NAMESPACES["dev"]}
        sync: {{driver: apply}}
        verify:
          workloads: [deployment/{APP}]
          timeout_seconds: 120
      - name: prod
        path: envs/prod/{APP}
        namespace: {NAMESPACES["prod"]}
        protected: true
{target}        sync: {{driver: apply}}
        verify:
          workloads: [deployment/{APP}]
          timeout_seconds: 120
"""


def environment_files(registry: str, env: str, tag: str) -> dict[str, str]:
    """Plain manifests for one environment of the demo app."""
    namespace = NAMESPACES[env]
    replicas = 2 if env == "prod" else 1
    return {
        f"envs/{env}/{APP}/deployment.yaml": f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {APP}
  namespace: {namespace}
  labels:
    app.kubernetes.io/name: {APP}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app.kubernetes.io/name: {APP}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {APP}
    spec:
      containers:
        - name: {APP}
          image: {registry}/{IMAGE_PATH}:{tag}
          ports:
            - containerPort: 8080
          readinessProbe:
            httpGet:
              path: /
              port: 8080
""",
        f"envs/{env}/{APP}/service.yaml": f"""\
apiVersion: v1
kind: Service
metadata:
  name: {APP}
  namespace: {namespace}
spec:
  selector:
    app.kubernetes.io/name: {APP}
  ports:
    - port: 80
      targetPort: 8080
""",
    }
