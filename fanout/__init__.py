"""Websocket + HTTP fan-out of prices, valuations, dashboard cards and alerts.

Entry points: ``run_server`` / ``serve_forever`` (``fanout.server``),
``FanoutConfig``, and ``mint_token`` for development tokens.
"""

from fanout.auth import mint_token
from fanout.config import FanoutConfig
from fanout.server import FanoutServer, ServerReady, run_server, serve_forever

__all__ = [
    "FanoutConfig",
    "FanoutServer",
    "ServerReady",
    "mint_token",
    "run_server",
    "serve_forever",
]
