"""CLI command groups; each takes the ``Settings`` from the Typer context."""
