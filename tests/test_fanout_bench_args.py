"""The fan-out benchmark refuses bad arguments before starting anything,
with one line saying what is wrong (argparse exits with status 2)."""

from __future__ import annotations

import pytest

from fanout.bench_args import parse_args


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--http-seconds", "0"], "--http-seconds must be positive"),
        (["--intervals", "0,x"], "--intervals must be comma-separated milliseconds"),
        (["--intervals", "-50"], "--intervals must not be negative"),
        (["--clients", "0"], "--clients must be at least 1"),
        (["--client-procs", "0"], "--client-procs must be at least 1"),
        (["--per-client", "11", "--symbols", "10"], "--per-client cannot exceed --symbols"),
        (["--rate", "0"], "--rate must be positive"),
        (["--seconds", "nan"], "--seconds must be positive"),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in last


def test_good_arguments_parse_and_quick_shortens_phases():
    args = parse_args(
        ["--quick", "--intervals", "0,250", "--http-rate", "0", "--http-seconds", "0"]
    )
    assert (args.seconds, args.intervals, args.http_rate) == (2.0, "0,250", 0.0)
    assert args.prefix.startswith("bench_")
