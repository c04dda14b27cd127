"""What Slack can ask the bot to do: diagnose, scan, propose fixes, approve or reject them, execute them, follow up.

Handlers parse and answer; everything else is here. Adapters (store, Kubernetes API, registry prober, Slack Web
API for user names and groups) are passed in; ``bot.runtime.build_flows(bot)` takes them from the composition root.

Proposals and approvals
    A fix (delete pod, recreate pull secret, link secret) is first DRY-RUN on the API server (`dryRun=All`: RBAC
    refusals and bare pods show up before anyone is asked), then stored as a `Proposal` with a
    "proposal.created" audit row, and an approval message with Approve / Reject buttons goes to the incident's
    thread through the outbox (or, without an incident, to the channel the command came from). Approving is a
    compare-and-set PENDING -> APPROVED in SQL, so a double click or two replicas approve once. Anyone may propose;
    approving (or rejecting someone else's proposal) needs a grant (`bot.access`), and with the two-person rule
    the requester cannot approve. Every refusal is answered ephemerally AND written to the audit log.

Executing: one executor per cluster, crash-safe, at most once
    `Flows.run_executor()` runs in every replica of every cluster. It claims APPROVED proposals of ITS OWN cluster
    (`settings.kube.cluster_name`) with a second compare-and-set on the row (`result IS NULL` -> "running: <id>"),
    runs the action, and moves the proposal APPROVED -> SUCCEEDED / FAILED with an audit row. An approved proposal
    not yet claimed (the bot was down, or the approval was clicked on another cluster's bot) is picked up by the
    next poll; a claimed one whose run was interrupted by a crash is never run again: after `stale_run_s` it is
    marked FAILED "interrupted, outcome unknown" (the actions are idempotent, so a human may simply propose again).

Several clusters, one Slack app, one database
    Socket Mode hands each request to ONE connected bot of ANY cluster. A request that names another cluster
    (`--cluster`, or a button on another cluster's incident) is not lost: it is stored as a "forwarded request" (a
    proposal of kind `rediagnose` created already APPROVED, carrying the parsed command in its params, with a
    "request.forwarded" audit row). The user is told which cluster's bot will answer; that cluster's executor claims
    the row and runs the command there as the requester, answering through the outbox (an ephemeral for read
    commands; the usual approval message for fixes, whose dry run thus runs on the right cluster). Approvals and
    rejections need only SQL and are handled wherever they arrive.

Typed registry credentials (the "Recreate pull secret" modal)
    They are never stored in SQL, logs or Slack messages. The receiving bot probes the registry with them first
    (`fresh=True`) and refuses credentials the registry rejects (401/403), dry-runs the write, then keeps them in a
    short-lived in-memory `CredentialVault` keyed by proposal id; the proposal records only the server, the
    credential fingerprint and the identity of the holding process. Only that process claims the proposal after
    approval; if it is gone (restart), the proposal fails after `holder_grace_s` with "type them again". Because
    they cannot travel between processes, credentials typed on a bot of another cluster are refused at submission
    (submit again: Slack picks a bot at random in Socket Mode; or copy from an existing secret). The audit keeps
    fingerprints of the old and new credential, never values.

Modules, one per activity: `core` (the `Flows` facade and the command dispatch), `context` (what every flow shares:
clock, audit rows, outbox), `reader` (pods as the watcher sees them), `users` (Slack names and groups), `reads`
(status, diagnose, scan), `incident_controls` (re-diagnose, snooze, mute),
`proposals` (dry run and proposal), `forms` (the secret modals and typed credentials), `approvals` (approve,
reject), `queue` (claims in SQL), `executor` (running approved proposals), `forwarding` (requests for another
cluster's bot), `oneshot` (the CLI's `diagnose`).
"""

from bot.chatops.port import Actor, SecretDefaults, Where
from bot.flows.core import Flows
from bot.flows.forwarding import REQUEST_KIND
from bot.flows.incident_controls import SNOOZE_FOR
from bot.flows.oneshot import diagnose_pod_once
from bot.flows.queue import RUNNING_PREFIX, ProposalQueue
from bot.flows.reader import PodReader
from bot.flows.users import UserDirectory

__all__ = [
    "REQUEST_KIND",
    "RUNNING_PREFIX",
    "SNOOZE_FOR",
    "Actor",
    "Flows",
    "PodReader",
    "ProposalQueue",
    "SecretDefaults",
    "UserDirectory",
    "Where",
    "diagnose_pod_once",
]
