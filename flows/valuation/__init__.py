"""Streaming valuation: prices coalesced per window, routed to portfolio
shards, each portfolio valued once per window it was touched in."""
