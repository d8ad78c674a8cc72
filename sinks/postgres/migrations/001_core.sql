-- Folio Stream core tables. Money is NUMERIC(38, 12); instants are timestamptz (UTC).
-- Every row the pipeline writes carries a version so replays never regress it.

CREATE TABLE IF NOT EXISTS portfolios (
    portfolio_id   text PRIMARY KEY,
    user_id        text NOT NULL,
    name           text,
    base_currency  text NOT NULL DEFAULT 'USD',
    benchmark      text NOT NULL DEFAULT 'SPY',
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS portfolios_user_idx ON portfolios (user_id);

CREATE TABLE IF NOT EXISTS transactions (
    txn_id           text PRIMARY KEY,
    portfolio_id     text NOT NULL,
    user_id          text NOT NULL,
    type             text NOT NULL,
    symbol           text,
    quantity         numeric(38, 12),
    price            numeric(38, 12),
    amount           numeric(38, 12),
    ratio            numeric(38, 12),
    fees             numeric(38, 12) NOT NULL DEFAULT 0,
    currency         text NOT NULL DEFAULT 'USD',
    executed_at      timestamptz NOT NULL,
    source_partition integer,
    source_offset    bigint,
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS transactions_portfolio_idx ON transactions (portfolio_id, executed_at);

CREATE TABLE IF NOT EXISTS positions (
    portfolio_id  text NOT NULL,
    symbol        text NOT NULL,
    quantity      numeric(38, 12) NOT NULL,
    cost_basis    numeric(38, 12) NOT NULL,
    realized_pnl  numeric(38, 12) NOT NULL DEFAULT 0,
    dividends     numeric(38, 12) NOT NULL DEFAULT 0,
    fees          numeric(38, 12) NOT NULL DEFAULT 0,
    currency      text NOT NULL DEFAULT 'USD',
    version       bigint NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (portfolio_id, symbol)
);

CREATE TABLE IF NOT EXISTS latest_valuations (
    portfolio_id  text PRIMARY KEY,
    user_id       text NOT NULL,
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL,
    market_value  numeric(38, 12) NOT NULL,
    cash          numeric(38, 12) NOT NULL,
    cost_basis    numeric(38, 12) NOT NULL,
    unrealized_pnl numeric(38, 12) NOT NULL,
    realized_pnl  numeric(38, 12) NOT NULL,
    payload       jsonb NOT NULL,
    version       bigint NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS alert_rules (
    rule_id       text PRIMARY KEY,
    user_id       text NOT NULL,
    portfolio_id  text,
    symbol        text,
    kind          text NOT NULL,
    threshold     numeric(38, 12) NOT NULL,
    window_ms     bigint,
    cooldown_ms   bigint NOT NULL DEFAULT 0,
    hysteresis    numeric(38, 12) NOT NULL DEFAULT 0,
    target        jsonb,
    active        boolean NOT NULL DEFAULT true,
    version       bigint NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (portfolio_id IS NOT NULL OR symbol IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS alert_rules_user_idx ON alert_rules (user_id);

CREATE TABLE IF NOT EXISTS alerts (
    alert_id      text PRIMARY KEY,
    rule_id       text NOT NULL,
    user_id       text NOT NULL,
    portfolio_id  text,
    symbol        text,
    kind          text NOT NULL,
    observed      numeric(38, 12),
    threshold     numeric(38, 12),
    message       text NOT NULL,
    triggered_at  timestamptz NOT NULL,
    payload       jsonb NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS alerts_user_idx ON alerts (user_id, triggered_at DESC);

CREATE TABLE IF NOT EXISTS dashboards (
    user_id     text PRIMARY KEY,
    document    jsonb NOT NULL,
    version     bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
