"""Pipeline steps: one module per step (typed config, pure core, thin Prefect task)."""
