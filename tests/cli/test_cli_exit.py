"""The CLI's fast exit still does what the interpreter's teardown would have: spans get out."""

from __future__ import annotations

import subprocess
import sys

_PROGRAM = """
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from agentmem.memory import telemetry
from agentmem.cli.main import end_now

provider = TracerProvider(shutdown_on_exit=False)
provider.add_span_processor(
    BatchSpanProcessor(ConsoleSpanExporter(), schedule_delay_millis=3_600_000)
)
telemetry.use_provider(provider)
with telemetry.span("buffered.until.exit"):
    pass
end_now(0)
"""


def test_end_now_exports_the_spans_still_buffered() -> None:
    """A span waiting in a batch exporter is exported before the command's ``os._exit``."""
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM], capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    assert '"name": "buffered.until.exit"' in done.stdout
