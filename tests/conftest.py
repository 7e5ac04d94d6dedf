"""Root test configuration: shared fixtures come from plugin modules listed here.

Property tests run under a Hypothesis profile chosen here, once: in CI (``CI`` set to
anything but ``0``/``false``/``no``) the ``shipyard-ci`` profile is derandomized and keeps
no example database, so a failing property fails on every run and on every machine with
the same example; locally ``shipyard-dev`` keeps exploring new examples. Set
``SHIPYARD_HYPOTHESIS_PROFILE`` to pick one explicitly (e.g. to reproduce CI locally).
"""

import os

from hypothesis import HealthCheck, settings

pytest_plugins: list[str] = [
    "tests.fixtures.services",
    "tests.fixtures.realcluster",
    "tests.fixtures.simcluster",
    "tests.fakes.operators.testing",
]

settings.register_profile(
    "shipyard-ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# Hypothesis itself switches to its own CI profile when it merely sees a CI variable
# (even CI=false); the local profile starts from the plain defaults to stay random.
settings.register_profile(
    "shipyard-dev", parent=settings.get_profile("default"), derandomize=False, print_blob=True
)


def _hypothesis_profile(env: dict[str, str]) -> str:
    """The profile for an environment: explicit choice, else CI's, else the local one."""
    chosen = env.get("SHIPYARD_HYPOTHESIS_PROFILE", "").strip()
    if chosen:
        return chosen
    in_ci = env.get("CI", "").strip().lower() not in {"", "0", "false", "no"}
    return "shipyard-ci" if in_ci else "shipyard-dev"


settings.load_profile(_hypothesis_profile(dict(os.environ)))
