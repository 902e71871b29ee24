"""Chaos tells which agent a process is from its command line, whatever the argument order."""

from __future__ import annotations

from agentmem.agents.zygote import agent_title
from agentmem.chaos.faults import agent_identity


def test_an_agent_is_identified_by_its_named_arguments() -> None:
    """Role, run id and instance come from ``-m agentmem.agents`` arguments, in any order."""
    python = "/venv/bin/python"
    cmdline = [python, "-m", "agentmem.agents", "writer", "--run-id", "r-1", "--instance", "2"]
    assert agent_identity(cmdline) == ("writer", "r-1", 2)
    reordered = [
        python,
        "-X",
        "dev",
        "-m",
        "agentmem.agents",
        "--instance=3",
        "--run-id=r-1",
        "review",
    ]
    assert agent_identity(reordered) == ("review", "r-1", 3)
    with_more = [
        python,
        "-m",
        "agentmem.agents",
        "research",
        "--run-id",
        "r-1",
        "--log-level",
        "DEBUG",
    ]
    assert agent_identity(with_more) == ("research", "r-1", 1)


def test_other_processes_are_not_taken_for_agents() -> None:
    """A command line that is not ``python -m agentmem.agents <role> --run-id R`` identifies no
    agent."""
    assert agent_identity(["/venv/bin/python", "-m", "agentmem.cli.main", "run"]) is None
    assert agent_identity(["grep", "agents", "--run-id", "r-1"]) is None
    assert agent_identity(["/venv/bin/python", "-m", "agentmem.agents", "writer"]) is None
    assert agent_identity(["/venv/bin/python", "-m", "agentmem.agents", "--instance", "x"]) is None


def test_an_agent_forked_by_the_zygote_is_found_by_its_process_title() -> None:
    """A title set in one piece, padded with empty strings or not, names the same agent."""
    title = agent_title("writer", "run a/1", 2)
    assert agent_identity([title, "", "", ""]) == ("writer", "run a/1", 2)
    assert agent_identity([title]) == ("writer", "run a/1", 2)
    assert agent_identity(["python -m agentmem.cli.main run", "", ""]) is None
