"""The ``agentmem`` command: the top layer, which drives every other one.

:mod:`cli.console` is the console script, :mod:`cli.main` the typer app; each other module
registers one group of commands (:mod:`cli.start`: ``run``; :mod:`cli.inspect`: ``runs``,
``inspect``, ``serve``...; :mod:`cli.service`: the workers and ``submit``). Nothing below this
package imports it (docs/architecture.md, "Layers"). Importing the package imports nothing, so
that the console script can name a missing extra before any import fails.
"""
