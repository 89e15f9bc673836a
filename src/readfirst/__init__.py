"""readfirst: research-driven optimisation with measurement you can trust."""

__version__ = "0.1.0"
