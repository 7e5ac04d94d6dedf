"""Root test configuration: shared fixtures come from plugin modules listed here."""

pytest_plugins: list[str] = [
    "tests.fixtures.services",
    "tests.fixtures.realcluster",
    "tests.fixtures.simcluster",
    "tests.fakes.operators.testing",
]
