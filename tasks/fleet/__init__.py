"""Fleet rollouts: one GitOps revision taken to many clusters in waves.

- :mod:`tasks.fleet.config`: the fleet file (pydantic), label selectors as Kubernetes
  matches them, the wave assignment and the validated :class:`~tasks.fleet.config.FleetPlan`;
- :mod:`tasks.fleet.cluster`: one cluster's step (probe, resume check, record the
  revision it ran before, sync, verify at REV) and its rollback;
- :mod:`tasks.fleet.run`: the state machine over the waves (max_parallel, halt on the
  first failure, rollback of the wave or of everything, bake, resume);
- :mod:`tasks.fleet.control`: pause, resume and skip-a-cluster, read from one value
  (the run's Prefect Variable) before every wave and cluster.

The selector and wave models are shared with the catalog (:mod:`shipyard.core.fleet`);
:func:`tasks.fleet.config.plan_environment` plans a catalog environment's fleet.

No Prefect here; the thin tasks are in :mod:`tasks.steps.fleet`, the flow in
:mod:`flows.fleet_rollout`.
"""
