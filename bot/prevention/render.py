"""The scan's findings as Slack text and Block Kit (pure)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from bot.prevention.findings import Finding, Risk
from bot.slack.render import MAX_SECTION, code, escape, truncate

MAX_LINES = 40
MAX_BLOCKS = 45  # Slack allows 50 blocks in a message

WORDS = {
    Risk.TAG_GONE: "tag or digest gone from the registry",
    Risk.REPO_GONE_OR_DENIED: "repository gone, or these credentials may not read it",
    Risk.CREDENTIALS_REJECTED: "pull secret rejected by the registry",
    Risk.NO_CREDENTIALS: "registry wants credentials; a new pod would send none",
    Risk.SECRET_MISSING: "referenced pull secret missing",
    Risk.SECRET_UNPARSABLE: "pull secret unreadable",
    Risk.CREDENTIAL_EXPIRED: "registry credentials expired",
    Risk.CREDENTIAL_EXPIRING: "registry credentials expire soon",
    Risk.PLATFORM_MISSING: "image lacks a platform of nodes it may land on",
    Risk.QUOTA_LOW: "registry pull quota nearly spent",
    Risk.DIGEST_CHANGED: "mutable tag moved since the running pods pulled it",
    Risk.UNCHECKED: "could not check",
}


def at_risk(findings: Iterable[Finding]) -> int:
    """How many workloads have a finding that is a verdict (not "could not check")."""
    return len({(f.namespace, f.workload) for f in findings if f.risk is not Risk.UNCHECKED})


def finding_lines(findings: Sequence[Finding], max_lines: int = MAX_LINES) -> list[str]:
    """Findings grouped by risk: a heading per risk, one line per workload and container, then its fix."""
    by_risk: dict[Risk, list[Finding]] = defaultdict(list)
    for f in findings:
        by_risk[f.risk].append(f)
    lines: list[str] = []
    shown = 0
    for risk in Risk:
        group = by_risk.get(risk, [])
        if not group or shown >= max_lines:
            continue
        lines.append(f"*{WORDS[risk]}* ({len(group)})")
        for f in group:
            if shown >= max_lines:
                break
            lines.append(f"• {code(f.namespace)} {code(f.workload)} {code(f.container)}: {escape(f.detail)}")
            if f.fix:
                lines.append(f"   `{escape(f.fix)}`")
            shown += 1
    if shown < len(findings):
        lines.append(f"_…and {len(findings) - shown} more: `imagepull-doctor scan --deep` lists them all._")
    return lines


def render_findings(findings: Sequence[Finding], head: str) -> str:
    """One mrkdwn text: a summary line, then the grouped findings."""
    lead = f":rotating_light: *{at_risk(findings)} workload(s) at risk* of a pull failure on their next pod ({head}):"
    return "\n".join([lead, *finding_lines(findings)])


def sections(text: str) -> tuple[dict[str, object], ...]:
    """mrkdwn text cut at line ends into section blocks of at most MAX_SECTION characters each."""
    blocks: list[dict[str, object]] = []
    chunk: list[str] = []
    size = 0
    for line in text.split("\n"):
        line = truncate(line, MAX_SECTION - 10)
        if chunk and size + len(line) + 1 > MAX_SECTION - 10:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(chunk)}})
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(chunk)}})
    return tuple(blocks[:MAX_BLOCKS])
