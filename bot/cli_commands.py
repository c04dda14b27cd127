"""What each CLI command does, given built Settings."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from dataclasses import asdict
from datetime import UTC, datetime

from pydantic import SecretStr

from bot.runtime import run_bot
from bot.settings import Settings

log = logging.getLogger(__name__)


async def run(settings: Settings) -> int:
    """Run every task of a bot process (`bot.runtime.run_bot`) until SIGTERM/SIGINT."""
    if not settings.slack.configured:
        print(
            "imagepull-doctor: setting slack.bot_token (IMAGEPULL_SLACK__BOT_TOKEN) is required for run",
            file=sys.stderr,
        )
        return 2
    if settings.slack.mode == "http" and not _secret_set(settings.slack.signing_secret):
        # Without it no request can be verified: refuse to start rather than act on forged requests.
        print(
            "imagepull-doctor: setting slack.signing_secret (IMAGEPULL_SLACK__SIGNING_SECRET) is required in http mode",
            file=sys.stderr,
        )
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await run_bot(settings, stop=stop)


def _secret_set(value: SecretStr | None) -> bool:
    return value is not None and bool(value.get_secret_value())


async def diagnose(settings: Settings, namespace: str, pod: str, *, as_json: bool) -> int:
    """Print the verified diagnosis of each failing container of one pod."""
    from bot.flows import diagnose_pod_once

    try:
        results = await diagnose_pod_once(settings, namespace, pod)
    except LookupError as exc:
        print(f"imagepull-doctor: {exc}", file=sys.stderr)
        return 1
    if not results:
        print(f"{namespace}/{pod}: no container is waiting on an image pull")
        return 0
    for failure, diagnosis in results:
        if as_json:
            print(
                json.dumps({"container": failure.container, "image": failure.image, **asdict(diagnosis)}, default=str)
            )
            continue
        print(f"{namespace}/{pod} container {failure.container} ({failure.image})")
        print(f"  cause: {diagnosis.cause.value}  confidence {diagnosis.confidence:.0%}")
        print(f"  {diagnosis.summary}")
        for e in diagnosis.evidence:
            mark = {True: "✔", False: "✘", None: "•"}[e.ok]
            print(f"  {mark} {e.text}")
        for fix in diagnosis.fixes:
            print(f"  # {fix.title}\n  {fix.command}")
    return 0


async def scan(settings: Settings, namespace: str | None, *, as_json: bool) -> int:
    """The latent-failure scan (`bot.prevention`): exit 0 when nothing is at risk, 1 when something is."""
    from bot.kube.client import load_api_client
    from bot.prevention.findings import Risk
    from bot.prevention.scanner import LatentScanner
    from bot.registry.probe import RegistryProber

    api = await load_api_client(settings.kube)
    prober = RegistryProber(settings.registry)
    try:
        report = await LatentScanner(api, prober, exclude_namespaces=settings.kube.exclude_namespaces).scan(namespace)
    finally:
        await prober.close()
        await api.close()
    summary = {
        "workloads": report.workloads,
        "images": report.images,
        "registry_checks": report.checks,
        "findings": report.by_risk(),
        "could_not_read": report.could_not_read,
        "seconds": report.seconds,
    }
    if as_json:
        for f in report.findings:
            print(json.dumps({"risk": f.risk.value, **{k: v for k, v in asdict(f).items() if k != "risk"}}))
        print(json.dumps(summary))
    else:
        for f in report.findings:
            print(f"{f.risk.value:<22} {f.namespace}/{f.workload} container {f.container} ({f.image})")
            print(f"    {f.detail}")
            if f.fix:
                print(f"    fix: {f.fix}")
        for line in report.could_not_read:
            print(f"could not check: {line}")
        at_risk = len({(f.namespace, f.workload) for f in report.findings if f.risk is not Risk.UNCHECKED})
        print(
            f"{report.workloads} workloads, {report.images} images, {report.checks} registry checks: "
            f"{at_risk} workloads at risk in {report.seconds:.1f}s"
        )
    return 1 if any(f.risk is not Risk.UNCHECKED for f in report.findings) else 0


async def db_upgrade(settings: Settings) -> int:
    """Apply migrations up to head."""
    from bot.store.migrate import upgrade

    await upgrade(settings.database_url)
    print("database is at the newest revision")
    return 0


async def audit_verify(settings: Settings) -> int:
    """Check the audit hash chain; exit 1 when broken."""
    from bot.store.store import Store

    store = await Store.open(settings.database_url, audit_key=settings.audit.key)
    try:
        result = await store.verify_audit()
    finally:
        await store.close()
    if settings.audit.key is None:
        print(
            "imagepull-doctor: audit.hmac_key (IMAGEPULL_AUDIT__HMAC_KEY) is not set: an unkeyed chain can be"
            " recomputed by anyone who can write to the database",
            file=sys.stderr,
        )
    if result.ok:
        print(f"audit log intact: {result.checked} rows verified")
        return 0
    print(f"audit log BROKEN at row {result.first_bad_id}: {result.reason} ({result.checked} rows checked)")
    return 1


async def audit_adopt(settings: Settings) -> int:
    """Sign the head of an unkeyed chain (written before the key was set) after verifying it; exit 1 if broken."""
    from bot.store.store import Store

    if settings.audit.key is None:
        print("imagepull-doctor: setting audit.hmac_key (IMAGEPULL_AUDIT__HMAC_KEY) is required", file=sys.stderr)
        return 2
    store = await Store.open(settings.database_url, audit_key=settings.audit.key)
    try:
        result = await store.adopt_unkeyed_audit()
    finally:
        await store.close()
    if result.ok:
        print(f"audit chain head signed: {result.checked} unkeyed rows verified and adopted")
        return 0
    print(f"audit log BROKEN at row {result.first_bad_id}: {result.reason}; nothing was signed")
    return 1


async def audit_list(settings: Settings, since: datetime | None, limit: int) -> int:
    """Print audit rows, oldest first."""
    from bot.store.store import Store

    store = await Store.open(settings.database_url)
    try:
        rows = await store.list_audit(since=since, limit=limit)
    finally:
        await store.close()
    for r in rows:
        e = r.entry
        at = e.at.astimezone(UTC).isoformat(timespec="seconds")
        params = " ".join(f"{k}={v}" for k, v in sorted(e.params.items()))
        print(f"{r.id:>6} {at} {e.actor_name or e.actor_id:<16} {e.action:<22} {e.target} {params} -> {e.result}")
    return 0
