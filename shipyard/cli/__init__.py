"""The ``shipyard`` command line: one sub-command per step, each scriptable."""
