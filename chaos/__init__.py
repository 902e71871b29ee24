"""Chaos and the run invariants: tooling around the application, beside ``bench/``.

``python -m chaos`` (``make chaos``) runs the demo repeatedly while it kills agents and stops
or crashes Redis and PostgreSQL, then checks every run against :mod:`chaos.invariants`, the
same invariants the fault tests use.
"""

from chaos.invariants import run_problems
from chaos.session import ChaosOutcome, chaos_session, outcomes_table

__all__ = ["ChaosOutcome", "chaos_session", "outcomes_table", "run_problems"]
