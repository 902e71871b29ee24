"""The ``agentmem`` console script: the command line, or one line naming the extra it needs.

The memory layer installs with its own dependencies only (``pip install agentmem``); the
command line needs the application's (``pip install 'agentmem[app]'``). Without them the
script says so in one line instead of a traceback from the first missing import.
"""

from __future__ import annotations

import sys

_OURS = {"agentmem", "tests"}  # a missing module of ours is a bug, not a missing extra


def main() -> None:
    try:
        from agentmem.cli.main import main as cli_main  # after the check
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if not missing or missing in _OURS:
            raise
        print(  # the command's own output
            f"agentmem: the command line needs the app extra ({missing} is not installed): "
            "pip install 'agentmem[app]'",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    cli_main()
