"""The `imagepull-doctor` command: run, demo, diagnose NS/POD, db upgrade, audit verify|list.

Settings are built here, once, and passed down. A missing or wrong setting prints one line naming it and exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from kubernetes_asyncio.config.config_exception import ConfigException as KubeConfigError
from pydantic import ValidationError

from bot.logging_setup import configure_logging
from bot.settings import Settings

EXIT_CONFIG = 2


class ConfigError(Exception):
    """A setting is missing or wrong: one line for the user, exit code 2."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="imagepull-doctor",
        description="Diagnose Kubernetes image pull failures and post one Slack thread per incident.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="watch the cluster, diagnose, post to Slack and answer commands")
    run.add_argument("--cluster", help="cluster name (overrides IMAGEPULL_KUBE__CLUSTER_NAME)")
    demo = sub.add_parser(
        "demo", help="run the whole pipeline against a built-in simulated cluster, registry and Slack, then exit"
    )
    demo.add_argument("--seconds", type=float, default=45.0, help="give up after this long (default 45)")
    demo.add_argument("--workdir", default=".demo", help="where the demo keeps its SQLite file and kubeconfig")
    diag = sub.add_parser("diagnose", help="print the diagnosis of one pod using the current kubeconfig")
    diag.add_argument("target", metavar="NS/POD", help="namespace and pod, e.g. shop/api-7d9c-x2x")
    diag.add_argument("--json", action="store_true", help="print JSON instead of text")
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="apply Alembic migrations up to the newest (safe to repeat)")
    audit = sub.add_parser("audit", help="read and verify the audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    audit_sub.add_parser("verify", help="check the hash chain; exit 1 if a row was edited or deleted")
    lst = audit_sub.add_parser("list", help="print audit rows")
    lst.add_argument("--since", help="ISO date or time, e.g. 2026-11-01 or 2026-11-01T09:00")
    lst.add_argument("--limit", type=int, default=100)
    return p


def load_settings() -> Settings:
    """Build settings from the environment; turn validation errors into one readable line."""
    try:
        return Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ())) or "settings"
        env = "IMAGEPULL_" + "__".join(str(x).upper() for x in err.get("loc", ()))
        raise ConfigError(f"setting {where} ({env}): {err.get('msg', 'invalid')}") from None


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
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        if getattr(args, "cluster", None):
            settings.kube.cluster_name = args.cluster
        configure_logging(settings.log_level, json_lines=settings.log_json)
        return asyncio.run(_dispatch(args, settings))
    except ConfigError as exc:
        print(f"imagepull-doctor: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KubeConfigError as exc:
        where = "setting kube.kubeconfig (IMAGEPULL_KUBE__KUBECONFIG) / kube.context (IMAGEPULL_KUBE__CONTEXT)"
        print(f"imagepull-doctor: {where}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


async def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from bot import commands

    match args.command:
        case "run":
            return await commands.run(settings)
        case "demo":
            from bot.demo import run_demo

            return await run_demo(settings, seconds=args.seconds, workdir=args.workdir)
        case "diagnose":
            namespace, slash, pod = args.target.partition("/")
            if not slash or not namespace or not pod:
                raise ConfigError(f"diagnose: expected NS/POD, got {args.target!r}")
            return await commands.diagnose(settings, namespace, pod, as_json=args.json)
        case "db":
            return await commands.db_upgrade(settings)
        case "audit" if args.audit_command == "verify":
            return await commands.audit_verify(settings)
        case "audit":
            return await commands.audit_list(settings, _since(args.since), args.limit)
    logging.getLogger(__name__).error("unknown command %s", args.command)
    return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
