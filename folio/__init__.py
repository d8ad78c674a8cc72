"""Folio Stream's entry point: settings, CLI and the wiring of connectors,
flows and sinks. Nothing here runs at import time."""
