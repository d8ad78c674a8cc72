"""Reports built on demand from Postgres and ClickHouse with explicit
clients (no Settings here): ``build_report`` then ``report_json`` or a
rich rendering in ``folio.commands.portfolio``."""

from folio.reports.encode import report_json
from folio.reports.portfolio import PortfolioReport, PositionLine, Returns, build_report

__all__ = ["PortfolioReport", "PositionLine", "Returns", "build_report", "report_json"]
