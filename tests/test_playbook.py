"""`readfirst playbook`: the agent's instruction file, its markers and idempotent reruns."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from readfirst.core.errors import ConfigError
from readfirst.frontends.agent_cli_commands import playbook
from readfirst.frontends.playbook import AGENT_FILES, BEGIN, END, TOOL_LINES, merge, write_playbook


def run(*args: str) -> str:
    result = CliRunner().invoke(playbook, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("agent", sorted(AGENT_FILES))
def test_each_agent_gets_its_file_with_method_tools_and_protected_files(target: Path,
                                                                        agent: str) -> None:
    out = run("--agent", agent, "-C", str(target))
    path = target / AGENT_FILES[agent]
    assert out.strip() == f"wrote {path}"
    text = path.read_text()
    assert text.startswith(BEGIN) and text.rstrip().endswith(END)
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    for name in TOOL_LINES:
        assert f"`{name}(" in text
    for pattern in ("readfirst.toml", "autoresearch.sh", "autoresearch.checks.sh", "tests/**"):
        assert f"- `{pattern}`" in text
    assert "`time_ms` (ms), lower is better" in text and "`./autoresearch.sh`" in text
    assert "memory-bound" in text.lower() and "one hypothesis per experiment" in text.lower()
    assert "readfirst compare HEAD WORKTREE" in text and "readfirst research" in text
    assert "readfirst status" in text and "readfirst report" in text
    if agent in ("claude", "generic"):
        assert f"claude mcp add readfirst -- readfirst mcp -C {target}" in text
    if agent in ("codex", "generic"):
        toml = text.split("```toml\n", 1)[1].split("```", 1)[0]
        entry = tomllib.loads(toml)["mcp_servers"]["readfirst"]
        assert entry["command"] == "readfirst" and entry["args"] == ["mcp", "-C", str(target)]


def test_rerun_replaces_only_the_section_and_is_idempotent(target: Path) -> None:
    path = target / "CLAUDE.md"
    path.write_text("# My project\n\nUse tabs.\n")
    write_playbook(target, "claude")
    first = path.read_text()
    assert first.startswith("# My project\n\nUse tabs.\n\n" + BEGIN)
    path.write_text(first + "\n## Later notes\nkeep me\n")
    write_playbook(target, "claude")
    write_playbook(target, "claude")
    second = path.read_text()
    assert second == first + "\n## Later notes\nkeep me\n"
    assert second.count(BEGIN) == 1
    # a changed spec changes only the section
    toml = target / "readfirst.toml"
    toml.write_text(toml.read_text().replace('"tests/**"]', '"tests/**", "data/golden.bin"]'))
    write_playbook(target, "claude")
    third = path.read_text()
    assert "- `data/golden.bin`" in third
    assert third.startswith("# My project\n\nUse tabs.\n\n")
    assert third.endswith("\n## Later notes\nkeep me\n")


def test_print_writes_nothing(target: Path) -> None:
    out = run("--agent", "codex", "-C", str(target), "--print")
    assert out.startswith(BEGIN) and out.rstrip().endswith(END)
    assert not (target / "AGENTS.md").exists()


def test_bad_input_is_a_config_error(tmp_path: Path, target: Path) -> None:
    with pytest.raises(ConfigError, match="no such directory"):
        write_playbook(tmp_path / "nowhere", "claude")
    with pytest.raises(ConfigError, match="--agent"):
        write_playbook(target, "vim")
    with pytest.raises(ConfigError, match="unbalanced"):
        merge(f"{BEGIN}\nno end\n", f"{BEGIN}\nnew\n{END}\n")
    (target / "readfirst.toml").write_text("[target\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        write_playbook(target, "claude")
    result = CliRunner().invoke(playbook, ["--agent", "nope", "-C", str(target)])
    assert result.exit_code == 2


def test_without_a_spec_it_says_to_run_init(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "generic")
    text = path.read_text()
    assert path.name == "READFIRST.md" and "readfirst init" in text
    assert "- `readfirst.toml`" in text and "- `autoresearch.sh`" in text
