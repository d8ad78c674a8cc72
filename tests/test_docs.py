"""The README stays true: every setting and command it promises exists, and
every setting and command that exists is documented."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from folio.cli import app
from folio.settings import Settings, TopicNames

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_setting_is_documented_and_every_documented_setting_exists():
    names = {f"FOLIO_{n.upper()}" for n in Settings.model_fields if n != "topics"}
    names |= {f"FOLIO_TOPICS__{n.upper()}" for n in TopicNames.model_fields}
    documented = set(re.findall(r"`(FOLIO_[A-Z_]+)`", README))
    assert names - documented == set(), "settings missing from the README"
    assert documented - names == set(), "README documents settings that do not exist"


def test_every_command_is_documented():
    root = typer.main.get_command(app)
    for name in root.commands:  # type: ignore[attr-defined]
        assert f"`folio {name}" in README, f"folio {name} is not in the README"


def test_readme_names_the_test_command_ci_runs():
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    assert "make test" in ci
    assert "make test" in README and "make demo" in README
