"""The service: long-lived agent pools that serve every run, and the way to submit runs.

- :mod:`service.routes`: the pool's roles and routes, and the writer that tickets handoffs.
- :mod:`service.worker`: ``agentmem worker ROLE``, a worker serving its role for every run.
- :mod:`service.coordinator`: what starts and finishes a pooled run.
- :mod:`service.submit`: ``agentmem submit`` and ``wait``, and a run's state.
- :mod:`service.metrics`: backlog, slots and runs, for Prometheus and ``agentmem status``.

Imports point one way: ``service`` uses ``orchestrator``, ``agents`` and ``memory``; none of
them imports it.
"""
