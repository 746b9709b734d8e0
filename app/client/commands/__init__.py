"""The API-client commands, registered on the ``labelstream`` Typer app by :func:`register`."""

from __future__ import annotations

import typer

from app.client.commands.auth import login, logout, whoami
from app.client.commands.imports import import_command
from app.client.commands.keys import keys_cli
from app.client.commands.tasks import tasks_cli
from app.client.commands.versions import export_command, versions_cli


def register(cli: typer.Typer) -> None:
    cli.command("login")(login)
    cli.command("logout")(logout)
    cli.command("whoami")(whoami)
    cli.add_typer(keys_cli, name="keys")
    cli.command("import")(import_command)
    cli.add_typer(tasks_cli, name="tasks")
    cli.add_typer(versions_cli, name="versions")
    cli.command("export")(export_command)
