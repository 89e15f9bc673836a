"""Errors that end a command with a documented exit code and a one-line message."""

from readfirst.core.constants import EXIT_BASE_FAILED, EXIT_USAGE


class ReadfirstError(Exception):
    exit_code = 1


class ConfigError(ReadfirstError):
    """Bad input: config, revision, repository, command line. Exit 2."""

    exit_code = EXIT_USAGE


class BaseFailedError(ReadfirstError):
    """The base revision itself cannot be built or benchmarked. Exit 3."""

    exit_code = EXIT_BASE_FAILED


class BudgetExceeded(Exception):
    """A proposer reached its cost cap ([agent] max_cost_usd); the loop stops with the reason.
    (Here, not in proposers/, so the agents' ledger raising it needs no proposer.)"""
