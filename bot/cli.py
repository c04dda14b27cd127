"""The `imagepull-doctor` command: run, diagnose NS/POD, db upgrade, audit verify|list; demo and sim from the test kit.

Settings are built here, once, and passed down. A missing or wrong setting prints one line naming it and exits 2.

Commands that need the simulated world (`demo`, `sim`) belong to the test kit, a distribution of its own
(`testkit/`): it adds them through the entry point group `imagepull_doctor.commands`, so the product never imports it.
Without the kit installed, those commands say how to get it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import socket
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib.metadata import entry_points
from typing import Protocol

from kubernetes_asyncio.config.config_exception import ConfigException as KubeConfigError
from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy.exc import SQLAlchemyError

from bot.logging_setup import configure_logging
from bot.settings import Settings

EXIT_CONFIG = 2


class ConfigError(Exception):
    """A setting is missing or wrong: one line for the user, exit code 2."""


def _parser(plugins: Mapping[str, PluginCommand]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="imagepull-doctor",
        description="Diagnose Kubernetes image pull failures and post one Slack thread per incident.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="watch the cluster, diagnose, post to Slack and answer commands")
    run.add_argument("--cluster", help="cluster name (overrides IMAGEPULL_KUBE__CLUSTER_NAME)")
    diag = sub.add_parser("diagnose", help="print the diagnosis of one pod using the current kubeconfig")
    diag.add_argument("target", metavar="NS/POD", help="namespace and pod, e.g. shop/api-7d9c-x2x")
    diag.add_argument("--json", action="store_true", help="print JSON instead of text")
    scan = sub.add_parser("scan", help="find latent pull failures of every workload (what the NEXT pod would hit)")
    scan.add_argument("--deep", action="store_true", required=True, help="check every workload against its registry")
    scan.add_argument("--namespace", "-n", help="only this namespace")
    scan.add_argument("--json", action="store_true", help="print one JSON object per finding, then a summary")
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="apply Alembic migrations up to the newest (safe to repeat)")
    audit = sub.add_parser("audit", help="read and verify the audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    audit_sub.add_parser("verify", help="check the hash chain; exit 1 if a row was edited or deleted")
    audit_sub.add_parser("adopt", help="sign the head of a chain written before audit.hmac_key was set")
    lst = audit_sub.add_parser("list", help="print audit rows")
    lst.add_argument("--since", help="ISO date or time, e.g. 2026-11-01 or 2026-11-01T09:00")
    lst.add_argument("--limit", type=int, default=100)
    for name, plugin in plugins.items():
        plugin.add_arguments(sub.add_parser(name, help=plugin.help))
    for name in KIT_COMMANDS:
        if name not in plugins:
            sub.add_parser(name, help="(needs the test kit: pip install ./testkit)")
    return p


class PluginCommand(Protocol):
    """A command another distribution adds to the CLI (entry point group `imagepull_doctor.commands`)."""

    name: str
    help: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    async def run(self, args: argparse.Namespace, settings: Settings) -> int: ...


KIT_COMMANDS = ("demo", "sim")  # what the test kit adds; named here only to say how to get it


def plugin_commands() -> dict[str, PluginCommand]:
    """Commands added by installed distributions (the test kit adds `demo` and `sim`)."""
    found: dict[str, PluginCommand] = {}
    for ep in entry_points(group="imagepull_doctor.commands"):
        try:
            found[ep.name] = ep.load()
        except Exception as exc:  # a broken plugin must not break the product's own commands
            logging.getLogger(__name__).warning("command %s from %s not loaded: %s", ep.name, ep.value, exc)
    return found


def load_settings() -> Settings:
    """Build settings from the environment; turn validation errors into one readable line."""
    try:
        return Settings()
    except SettingsError as exc:  # a value that is not even parseable (bad JSON in a nested setting)
        raise ConfigError(_unparsable_setting(str(exc))) from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ())) or "settings"
        env = "IMAGEPULL_" + "__".join(str(x).upper() for x in err.get("loc", ()))
        raise ConfigError(f"setting {where} ({env}): {err.get('msg', 'invalid')}") from None


def _unparsable_setting(error: str) -> str:
    """Name the environment variable whose value could not be parsed (pydantic-settings names only the group)."""
    match = re.search(r'field "([^"]+)"', error)
    group = match.group(1) if match else ""
    prefix = f"IMAGEPULL_{group.upper()}"
    for name, value in sorted(os.environ.items()):
        if name != prefix and not name.startswith(prefix + "__"):
            continue
        text = value.strip()
        if text[:1] in "{[":
            try:
                json.loads(text)
            except json.JSONDecodeError as bad:
                where = ".".join(name.removeprefix("IMAGEPULL_").lower().split("__"))
                return f"setting {where} ({name}): not valid JSON ({bad.msg} at character {bad.pos})"
    return f"setting {group or 'unknown'} ({prefix}…): a value could not be parsed"


def _check_sqlite_folder(url: str) -> None:
    """An SQLite file can be created only in a folder that exists: say so before the driver fails in its thread."""
    if not url.startswith("sqlite+aiosqlite:///"):
        return
    path = url.removeprefix("sqlite+aiosqlite:///").split("?", 1)[0]
    if path and path != ":memory:" and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise ConfigError(f"setting database_url (IMAGEPULL_DATABASE_URL): the folder of {path} does not exist")


def _database_error(exc: Exception) -> str:
    """One line for a database that cannot be used: not migrated, or not reachable."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if re.search(r"no such table|relation .* does not exist|UndefinedTable", f"{text} {exc!r}"):
        return "the database has no tables yet: run `imagepull-doctor db upgrade` first"
    return f"setting database_url (IMAGEPULL_DATABASE_URL): the database cannot be used: {text[:200]}"


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since {text!r}: not an ISO date or time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    plugins = plugin_commands()
    args = _parser(plugins).parse_args(argv)
    if args.command in KIT_COMMANDS and args.command not in plugins:
        print(
            f"imagepull-doctor: '{args.command}' comes with the test kit: pip install ./testkit (make demo does)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        settings = load_settings()
        if getattr(args, "cluster", None):
            settings.kube.cluster_name = args.cluster
        configure_logging(settings.log_level, json_lines=settings.log_json)
        _check_sqlite_folder(settings.database_url)
        if args.command in plugins:
            return asyncio.run(plugins[args.command].run(args, settings))
        return asyncio.run(_dispatch(args, settings))
    except ConfigError as exc:
        print(f"imagepull-doctor: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SQLAlchemyError as exc:
        print(f"imagepull-doctor: {_database_error(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    except (ConnectionError, socket.gaierror) as exc:
        what = "the database (IMAGEPULL_DATABASE_URL)" if args.command in ("db", "audit") else "a service"
        print(f"imagepull-doctor: cannot connect to {what}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KubeConfigError as exc:
        where = "setting kube.kubeconfig (IMAGEPULL_KUBE__KUBECONFIG) / kube.context (IMAGEPULL_KUBE__CONTEXT)"
        print(f"imagepull-doctor: {where}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


async def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from bot import cli_commands as commands

    match args.command:
        case "run":
            return await commands.run(settings)
        case "diagnose":
            namespace, slash, pod = args.target.partition("/")
            if not slash or not namespace or not pod:
                raise ConfigError(f"diagnose: expected NS/POD, got {args.target!r}")
            return await commands.diagnose(settings, namespace, pod, as_json=args.json)
        case "scan":
            return await commands.scan(settings, args.namespace, as_json=args.json)
        case "db":
            return await commands.db_upgrade(settings)
        case "audit" if args.audit_command == "verify":
            return await commands.audit_verify(settings)
        case "audit" if args.audit_command == "adopt":
            return await commands.audit_adopt(settings)
        case "audit":
            return await commands.audit_list(settings, _since(args.since), args.limit)
    logging.getLogger(__name__).error("unknown command %s", args.command)
    return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
