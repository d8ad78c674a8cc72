"""Errors of the portfolio domain logic.

Business rejections (selling more than held, ...) are not exceptions: the
ledger returns them as ``ApplyResult`` values so a flow can route them to the
dead-letter topic. Exceptions here mean the caller broke a precondition.
"""

from __future__ import annotations


class PortfolioError(Exception):
    """Base class of every error raised by ``flows.portfolio``."""


class WrongPortfolioError(PortfolioError):
    """A transaction was applied to the state of a different portfolio."""
