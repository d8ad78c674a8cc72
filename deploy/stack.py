"""The local stack behind ``folio stack up|down|status|env``.

``up`` is idempotent: a component already answering is used as it is
(``external``); otherwise Folio starts it and records its PID, port and data
directory in ``HOME/stack.json``. ``down`` stops exactly the recorded PIDs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import redis

from deploy.processes import free_port, is_running, port_open, stop
from deploy.tansu import start_tansu

log = logging.getLogger(__name__)

TANSU_MARKER = "tansu"
EMBEDDED_MARKER = "deploy.embedded"


class StackError(RuntimeError):
    """The stack cannot be brought up; the message says why, in one line."""


@dataclass
class Component:
    name: str
    mode: str  # "started" (by Folio), "external" (already there) or "embedded"
    url: str
    pid: int | None = None
    marker: str | None = None
    data_dir: str | None = None
    log: str | None = None


@dataclass(frozen=True)
class StackConfig:
    home: Path
    kafka_bootstrap: str
    redis_url: str
    postgres_dsn: str
    clickhouse_dsn: str


@dataclass
class StackState:
    components: dict[str, Component] = field(default_factory=dict)

    @staticmethod
    def path(home: Path) -> Path:
        return home / "stack.json"

    @classmethod
    def load(cls, home: Path) -> StackState:
        path = cls.path(home)
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text())
        return cls({name: Component(**c) for name, c in raw.items()})

    def save(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        data = {name: asdict(c) for name, c in self.components.items()}
        self.path(home).write_text(json.dumps(data, indent=2) + "\n")

    def alive(self, name: str) -> bool:
        comp = self.components.get(name)
        return comp is not None and comp.pid is not None and is_running(comp.pid, comp.marker)


def _host_port(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return host or "127.0.0.1", int(port)


def _loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1", "")


def redis_answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def postgres_answers(dsn: str) -> bool:
    admin = psycopg.conninfo.make_conninfo(dsn, dbname="postgres")
    try:
        with psycopg.connect(admin, connect_timeout=2):
            return True
    except (psycopg.Error, OSError):
        return False


def up(cfg: StackConfig) -> StackState:
    state = StackState.load(cfg.home)
    state.components["kafka"] = _kafka_up(cfg, state)
    state.save(cfg.home)
    state.components["redis"] = _redis_up(cfg, state)
    state.save(cfg.home)
    state.components["postgres"] = _postgres_up(cfg, state)
    state.components["clickhouse"] = _clickhouse_up(cfg)
    state.save(cfg.home)
    return state


def _kafka_up(cfg: StackConfig, state: StackState) -> Component:
    if state.alive("kafka"):
        return state.components["kafka"]
    host, port = _host_port(cfg.kafka_bootstrap)
    if port_open(host, port):
        return Component("kafka", "external", cfg.kafka_bootstrap)
    if not _loopback(host):
        raise StackError(f"Kafka at {cfg.kafka_bootstrap} is not reachable")
    log_path = cfg.home / "logs" / "tansu.log"
    pid = start_tansu(port, log_path)
    return Component(
        "kafka", "started", f"127.0.0.1:{port}", pid, TANSU_MARKER, None, str(log_path)
    )


def _redis_up(cfg: StackConfig, state: StackState) -> Component:
    if state.alive("redis"):
        return state.components["redis"]
    if redis_answers(cfg.redis_url):
        return Component("redis", "external", cfg.redis_url)
    from deploy.embedded import start_embedded_redis

    port = urlsplit(cfg.redis_url).port or 6379
    if port_open("127.0.0.1", port):
        port = free_port()
    service = start_embedded_redis(cfg.home / "redis", port, cfg.home / "logs" / "redis.log")
    return Component(
        "redis",
        "embedded",
        service.url,
        service.pid,
        EMBEDDED_MARKER,
        str(service.data_dir),
        str(service.log_path),
    )


def _postgres_up(cfg: StackConfig, state: StackState) -> Component:
    if state.alive("postgres"):
        return state.components["postgres"]
    if postgres_answers(cfg.postgres_dsn):
        return Component("postgres", "external", cfg.postgres_dsn)
    from deploy.embedded import start_embedded_postgres

    service = start_embedded_postgres(cfg.home / "postgres", cfg.home / "logs" / "postgres.log")
    dbname = psycopg.conninfo.conninfo_to_dict(cfg.postgres_dsn).get("dbname") or "folio"
    url = psycopg.conninfo.make_conninfo(service.url, dbname=str(dbname))
    return Component(
        "postgres",
        "embedded",
        url,
        service.pid,
        EMBEDDED_MARKER,
        str(service.data_dir),
        str(service.log_path),
    )


def _clickhouse_up(cfg: StackConfig) -> Component:
    if cfg.clickhouse_dsn.startswith("chdb://"):
        path = Path(cfg.clickhouse_dsn.removeprefix("chdb://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return Component("clickhouse", "embedded", cfg.clickhouse_dsn, data_dir=str(path))
    return Component("clickhouse", "external", cfg.clickhouse_dsn)


def down(home: Path, only: set[str] | None = None) -> list[str]:
    """Stop what ``up`` started (by recorded PID), or just the components in
    ``only``; return the names stopped."""
    state = StackState.load(home)
    stopped = []
    for name, comp in list(state.components.items()):
        if only is not None and name not in only:
            continue
        del state.components[name]
        if comp.pid is None:
            continue
        if comp.mode == "embedded":
            from deploy.embedded import stop_embedded

            # The holder's own stop also stops the server it holds.
            if stop_embedded(comp.pid):
                stopped.append(name)
        elif stop(comp.pid, comp.marker):
            stopped.append(name)
    if state.components:
        state.save(home)
    else:
        StackState.path(home).unlink(missing_ok=True)
    return stopped


def started_by_us(before: StackState, after: StackState) -> set[str]:
    """Components ``after`` runs that ``before`` did not (to stop them again)."""
    return {
        name
        for name, comp in after.components.items()
        if comp.pid is not None
        and (name not in before.components or before.components[name].pid != comp.pid)
    }


def status(home: Path) -> list[tuple[str, str, str, str]]:
    """(component, mode, url, running?) rows."""
    state = StackState.load(home)
    rows = []
    for name, comp in state.components.items():
        running = "yes" if comp.pid is None or state.alive(name) else "no"
        if comp.pid is None and comp.mode == "external":
            running = "external"
        rows.append(
            (name, comp.mode, comp.url, f"{running}" + (f" (pid {comp.pid})" if comp.pid else ""))
        )
    return rows


def env_lines(state: StackState) -> list[str]:
    """``export FOLIO_...`` lines pointing a shell at this stack."""
    names = {
        "kafka": "FOLIO_KAFKA_BOOTSTRAP",
        "redis": "FOLIO_REDIS_URL",
        "postgres": "FOLIO_POSTGRES_DSN",
        "clickhouse": "FOLIO_CLICKHOUSE_DSN",
    }
    return [f"export {names[n]}='{c.url}'" for n, c in state.components.items() if n in names]
