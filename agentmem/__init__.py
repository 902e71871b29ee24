"""agentmem: shared memory across AI agent processes, installed under one name.

The repository keeps one folder per role at its top (``memory/``, ``agents/``,
``orchestrator/``...); the installed package puts them all under ``agentmem`` so that none of
its names can collide with another distribution's (``agents`` is also the import name of
openai-agents). In the checkout this folder holds one relative symlink per role folder, so the
same imports work from the checkout, from an editable install and from a wheel:

- :mod:`agentmem.memory`: the memory layer, the library (``pip install agentmem``);
- :mod:`agentmem.agents`, :mod:`agentmem.orchestrator`, :mod:`agentmem.web`,
  :mod:`agentmem.service`: the application (the ``app`` extra);
- :mod:`agentmem.devservers`: local Redis and PostgreSQL servers (the ``local`` extra);
- :mod:`agentmem.mcp` (``agentmem_mcp/``): the MCP server (the ``mcp`` extra);
- :mod:`agentmem.chaos`, :mod:`agentmem.bench`: ``make chaos`` and ``make bench``.

Importing ``agentmem`` imports none of them.
"""
