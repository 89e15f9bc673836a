"""The [executor], [research], [agent] and [loop] tables are typed: a wrong type or an unknown
key is a one-line error naming the file, the line and the key (with the likely key for a
typo); [loop] gives `readfirst run` its defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TOML, make_target, run_cli, write
from test_loop import loop_target  # noqa: F401  (a fixture)

from readfirst.core.config import load_spec
from readfirst.core.errors import ConfigError


@pytest.mark.parametrize(("table", "message"), [
    ('[executor]\nnoise_every = "x"\n',
     r"readfirst.toml:\d+: \[executor\] noise_every: expected a valid integer.*got 'x'"),
    ("[executor]\nnoise_evry = 3\n",
     r"readfirst.toml:\d+: \[executor\] noise_evry: unknown key \(did you mean noise_every\?\)"),
    ('[research]\ntopcs = ["softmax"]\n',
     r"\[research\] topcs: unknown key \(did you mean topics\?\)"),
    ('[agent]\nkind = "openai"\nmodle = "gpt"\n',
     r"\[agent\] modle: unknown key \(did you mean model\?\)"),
    ("[loop]\nworkers = 0\n", r"\[loop\] workers: expected .*greater than or equal to 1"),
    ("[loop]\nwavez = true\n", r"\[loop\] wavez: unknown key \(did you mean waves\?\)"),
    ('[exector]\nkind = "ray"\n', r"\[exector\]: unknown key \(did you mean executor\?\)"),
])
def test_bad_tables_are_refused_with_file_line_and_key(tmp_path: Path, table: str,
                                                       message: str) -> None:
    target = make_target(tmp_path / "t", TOML + "\n" + table)
    with pytest.raises(ConfigError, match=message) as err:
        load_spec(target)
    line = int(str(err.value).split(":")[1])  # the offending line itself
    bad = table.splitlines()[0 if "exector" in table else -1]
    assert (TOML + "\n" + table).splitlines()[line - 1] == bad


def test_a_plugin_executor_keeps_its_own_keys(tmp_path: Path) -> None:
    target = make_target(tmp_path / "t", TOML + '\n[executor]\nkind = "mycluster"\nqueue = "q"\n')
    assert load_spec(target).executor == {"kind": "mycluster", "queue": "q"}


def test_the_cli_reports_a_bad_table_in_one_line(tmp_path: Path) -> None:
    target = make_target(tmp_path / "t", TOML + "\n[executor]\nmax_worker_cv = -1\n")
    code, _, proc = run_cli("run", "--proposer", "patches", "--patches", "x", cwd=target)
    assert code == 2
    assert proc.stderr.strip().startswith("readfirst: error: ")
    assert "readfirst.toml:" in proc.stderr and "[executor] max_worker_cv" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_loop_table_gives_run_its_defaults(
        loop_target: tuple[Path, Path]) -> None:  # noqa: F811
    target, patches = loop_target
    toml = (target / "readfirst.toml").read_text()
    write(target, "readfirst.toml", toml + f'\n[loop]\nproposer = "patches"\npatches = '
          f'"{patches}"\nworkers = 1\nmax_experiments = 1\n')
    code, s, proc = run_cli("run", "--json", cwd=target)
    assert code == 0, proc.stderr
    assert s["workers"] == 1 and s["stop_reason"] == "max experiments"
    assert len([e for e in s["experiments"] if e["kind"] == "explore" and e["wave"] > 0]) == 1
    # the command line wins over the table
    code, s, proc = run_cli("run", "--json", "--max-experiments", "2", cwd=target)
    assert code == 0, proc.stderr
    assert len([e for e in s["experiments"] if e["kind"] == "explore" and e["wave"] > 0]) == 2
