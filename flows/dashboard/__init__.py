"""Per-user dashboard cards (performance, income, allocation, movers,
activity), each with its own version and ``as_of``, emitted only when their
content changes; see ``flows.dashboard.flow`` for the pipeline steps."""

from flows.dashboard.board import CARDS, Card, DashboardUpdate
from flows.dashboard.compute import CardSettings
from flows.dashboard.flow import DashboardConfig, DashboardSinks, add_dashboard

__all__ = [
    "CARDS",
    "Card",
    "CardSettings",
    "DashboardConfig",
    "DashboardSinks",
    "DashboardUpdate",
    "add_dashboard",
]
