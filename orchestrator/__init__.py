"""The orchestrator: launches and supervises agent processes, shows progress, writes the report."""
