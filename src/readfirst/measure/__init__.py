"""Measuring one comparison: runner, compare, statistics, judge, guards, sandbox, metric formats."""
