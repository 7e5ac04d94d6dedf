"""Root test configuration: shared fixtures come from plugin modules listed here."""

pytest_plugins: list[str] = [
    "tests.fixtures.services",
    "tests.fixtures.realcluster",
    "simcluster.testing",
    "simcluster.operators.testing",
]
