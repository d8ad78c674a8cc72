"""``folio``: one console script for operators, analysts and developers.

Settings are read once here and handed down. Expected failures (bad
arguments, unreachable services) print one line and exit with code 2.
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from folio.commands import alerts, bench, data, feed, history, pipeline, portfolio, serve, stack
from folio.errors import expected_errors
from folio.logs import configure_logging
from folio.settings import Settings

try:  # typer >= 0.22 vendors click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import UsageError  # type: ignore[no-redef]

app = typer.Typer(
    name="folio",
    help="Folio Stream: real-time portfolio analytics on Kafka and Bytewax.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(ctx: typer.Context) -> None:
    settings = Settings()
    # Services log as they go; one-shot commands only say what went wrong.
    quiet = ctx.invoked_subcommand not in {"run", "serve", "demo"}
    configure_logging(settings.log_level, minimum="WARNING" if quiet else None)
    ctx.obj = settings


app.add_typer(stack.app, name="stack")
app.add_typer(feed.app, name="feed")
app.add_typer(alerts.app, name="alerts")
app.add_typer(portfolio.app, name="portfolio")
app.add_typer(data.schemas_app, name="schemas")
app.command("migrate")(pipeline.migrate)
app.command("run")(pipeline.run)
app.command("demo")(pipeline.demo)
app.command("sql")(data.sql)
app.command("serve")(serve.serve)
app.command("history")(history.history)
app.command("backfill")(history.backfill)
app.command("bench")(bench.bench)
app.command("token")(serve.token)


def main(argv: list[str] | None = None) -> int:
    try:
        result = app(args=argv, standalone_mode=False, prog_name="folio")
    except UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        print(f"folio: error: {exc.format_message()}{hint}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        what = f"invalid setting FOLIO_{where.upper()}" if where else "invalid settings"
        print(f"folio: error: {what}: {first['msg']}", file=sys.stderr)
        return 2
    except (typer.Abort, KeyboardInterrupt):
        print("folio: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not isinstance(exc, expected_errors()):
            raise
        print(f"folio: error: {exc}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
