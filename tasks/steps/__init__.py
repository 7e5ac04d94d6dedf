"""The @task wrappers: one module per area, each wrapper calls a Prefect-free core."""
