"""Agents: LLM API clients and coding-agent CLIs that turn research into candidates."""
