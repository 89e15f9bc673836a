"""Git through the git CLI (gitcli), worktrees and the state directory (workspace)."""
