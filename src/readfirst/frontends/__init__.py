"""What users drive: the CLI, the MCP server, the playbook, the demo, the dashboard."""
