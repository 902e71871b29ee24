"""The agent processes: research, writer and review roles, the runtime they share, the LLM."""
