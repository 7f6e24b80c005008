"""Docs that tests keep honest: every setting, CLI command and endpoint is documented."""

from __future__ import annotations

from pathlib import Path

import click

from klantbeeld.app import create_app
from klantbeeld.cli import main
from klantbeeld.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _commands(group: click.Group, prefix: str = "klantbeeld") -> list[str]:
    found = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            found.extend(_commands(command, path))
        else:
            found.append(path)
    return found


def test_every_setting_is_documented():
    text = (DOCS / "settings.md").read_text()
    missing = [f"KLANTBEELD_{name.upper()}" for name in Settings.model_fields
               if f"`KLANTBEELD_{name.upper()}`" not in text]
    assert not missing, f"undocumented settings in docs/settings.md: {missing}"


def test_every_cli_command_is_documented():
    text = (DOCS / "cli.md").read_text()
    missing = [c for c in _commands(main) if f"`{c}" not in text]
    assert not missing, f"undocumented commands in docs/cli.md: {missing}"


def test_every_endpoint_is_documented():
    text = (DOCS / "api.md").read_text()
    schema = create_app().openapi()
    missing = [f"{method.upper()} {path}" for path, ops in schema["paths"].items()
               for method in ops if f"`{path}`" not in text]
    assert not missing, f"undocumented endpoints in docs/api.md: {missing}"


def test_readme_shows_the_two_setup_commands():
    readme = (DOCS.parent / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme


def test_every_predict_option_is_documented():
    from klantbeeld.predict.config import PredictConfig

    text = (DOCS / "predict.md").read_text()
    missing = [f"{section}.{name}" for section, field in PredictConfig.model_fields.items()
               for name in (getattr(field.annotation, "model_fields", None) or {})
               if f"`{name}`" not in text]
    missing += [s for s in PredictConfig.model_fields if s != "models" and f"`{s}`" not in text]
    assert not missing, f"undocumented predict.yaml fields in docs/predict.md: {missing}"
