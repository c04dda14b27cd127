"""The recreate-secret and link-secret forms: their defaults, their field checks and typed registry credentials."""

from __future__ import annotations

import logging
from dataclasses import replace

from bot import imageref
from bot.chatops.grammar import Command, is_host, is_subdomain
from bot.chatops.port import Actor, SecretDefaults, Submitted, Where
from bot.flows.context import FlowContext, target_of
from bot.flows.incident_controls import first_pod
from bot.flows.proposals import Proposals
from bot.kube.dockerconfig import fingerprint
from bot.kube.inspect import Inspector
from bot.kube.writes import KubeActions
from bot.model import ActionKind, Credentials, ProbeOutcome
from bot.registry.probe import RegistryProber
from bot.vault import HeldCredentials

log = logging.getLogger(__name__)

_REJECTED_PROBE = frozenset({ProbeOutcome.UNAUTHORIZED, ProbeOutcome.FORBIDDEN})


class SecretForms:
    """What the secret modals pre-fill and accept; typed credentials are checked on the registry, then proposed."""

    def __init__(
        self,
        ctx: FlowContext,
        *,
        identity: str,
        inspector: Inspector,
        prober: RegistryProber,
        kube: KubeActions,
        proposals: Proposals,
    ) -> None:
        self.ctx = ctx
        self.identity = identity
        self.inspector = inspector
        self.prober = prober
        self.kube = kube
        self.proposals = proposals

    async def secret_defaults(self, incident_key: str | None, cmd: Command | None = None) -> SecretDefaults:
        """What to pre-fill in the recreate-secret / link-secret modals, from the incident and a quick inspection."""
        if cmd is not None:
            return SecretDefaults(
                cluster=cmd.cluster or self.ctx.cluster,
                namespace=cmd.namespace or "",
                secret=cmd.name or "",
                server=cmd.server or "",
                incident=cmd.incident,
            )
        incident = await self.ctx.store.get_incident(incident_key) if incident_key else None
        if incident is None:
            return SecretDefaults(cluster=self.ctx.cluster, namespace="")
        defaults = SecretDefaults(
            cluster=incident.cluster,
            namespace=incident.namespace,
            server=incident.registry if incident.registry != "unknown" else "",
            image=incident.image,
            incident=incident.key,
        )
        pod = first_pod(incident)
        if incident.cluster != self.ctx.cluster or pod is None:
            return defaults
        try:
            inspection, _ = await self.inspector.inspect(pod[0], pod[1], incident.image)
        except Exception as exc:  # pre-filling is a convenience: never fail the modal for it
            log.warning("inspection for modal defaults failed: %s", type(exc).__name__)
            return defaults
        secrets = inspection.secrets
        broken = next((x for x in secrets if not x.exists or not x.matches_image), None)
        chosen = broken or next((x for x in secrets if x.exists and x.matches_image), None)
        return replace(
            defaults,
            secret=chosen.name if chosen is not None else "",
            serviceaccount=inspection.service_account or "default",
        )

    def credential_form_errors(
        self, defaults: SecretDefaults, *, secret: str, server: str, username: str, password: str, image: str
    ) -> dict[str, str]:
        """Field errors of the typed-credentials form (block id -> message); empty when it may go ahead."""
        errors: dict[str, str] = {}
        if defaults.cluster != self.ctx.cluster:
            errors["password"] = (
                f"This form reached the bot of cluster {self.ctx.cluster}, but the secret is on {defaults.cluster};"
                " typed credentials never leave the bot that receives them. Submit again (another bot may answer)"
                " or copy from an existing secret."
            )
            return errors
        host = registry_host(server)
        if not is_subdomain(secret):
            errors["secret"] = "A secret name: lowercase letters, digits, '-' and '.'."  # noqa: S105 (a field or verb name, not a password)
        if not is_host(host):
            errors["server"] = "A registry host, e.g. registry.example.com or registry.example.com:5000."
        if not username or ":" in username or len(username) > 1024:
            errors["username"] = "A user name without ':'."
        if not password or len(password) > 16384:
            errors["password"] = "The password or token."  # noqa: S105 (a field or verb name, not a password)
        ref = imageref.try_parse(image.strip() or defaults.image)
        if ref is None:
            errors["image"] = "An image on that registry to test the credentials with, e.g. registry.example.com/app:1."
        elif is_host(host) and imageref.registry_key(ref.registry) != imageref.registry_key(host):
            errors["image"] = "This image is on another registry than the server."
        return errors

    async def propose_credentials(
        self,
        defaults: SecretDefaults,
        *,
        secret: str,
        server: str,
        username: str,
        password: str,
        image: str,
        actor: Actor,
        where: Where,
    ) -> Submitted:
        """Typed credentials: probe the registry with them, dry-run the write, hold them in memory, propose."""
        actor = await self.ctx.named(actor)
        ns = defaults.namespace
        checks = await self.proposals.checks(ActionKind.RECREATE_SECRET, ns, secret, {"mode": "credentials"})
        decision = await self.ctx.may_act(actor, self.ctx.cluster, ns, ActionKind.RECREATE_SECRET.value, checks)
        if not decision.allowed:
            # No probe at all: the form must not let anyone make the bot connect somewhere (and tell open ports
            # from closed ones by the answer); only those who may approve the write may test credentials.
            await self.ctx.audit(
                actor,
                "proposal.refused",
                target_of(self.ctx.cluster, ns, "secret", secret if is_subdomain(secret) else "-"),
                decision.reason,
                {"action": "recreate_secret", "attempt": "typed_credentials", **decision.params},
                incident_key=defaults.incident,
            )
            why = f"Only users granted recreate_secret in namespace {ns}"
            if self.ctx.authority.cluster_decides and decision.params:
                why = (
                    f"Only users the cluster allows to write this secret ({decision.reason.removeprefix('refused: ')})"
                )
            return Submitted(errors={"password": f"{why} may test typed credentials; nothing was checked or stored."})
        errors = self.credential_form_errors(
            defaults, secret=secret, server=server, username=username, password=password, image=image
        )
        host = registry_host(server)
        ref = imageref.try_parse(image.strip() or defaults.image)
        if errors or ref is None:
            return Submitted(errors=errors or {"image": "An image to test the credentials with."})
        new_fp = fingerprint(host, username, password)
        target = target_of(self.ctx.cluster, ns, "secret", secret)
        probe = await self.prober.probe(ref, Credentials(username, password, new_fp), None, fresh=True)
        audit_params = {
            "action": "recreate_secret",
            "server": host,
            "new_fingerprint": new_fp,
            "probe": probe.outcome.value,
        }
        if probe.outcome in _REJECTED_PROBE:
            status = probe.http_status or (401 if probe.outcome is ProbeOutcome.UNAUTHORIZED else 403)
            await self.ctx.audit(
                actor,
                "proposal.refused",
                target,
                f"refused: the registry rejected the credential ({status})",
                audit_params,
                incident_key=defaults.incident,
            )
            return Submitted(
                errors={"password": f"The registry {host} rejected these credentials ({status}); nothing was stored."}
            )
        dry = await self.kube.acting_as(decision.identity).upsert_pull_secret(
            ns, secret, host, username, password, dry_run=True
        )
        params = {
            "mode": "credentials",
            "server": host,
            "new_fingerprint": new_fp,
            "old_fingerprint": dry.old_fingerprint or "none",
            "probe": probe.outcome.value,
            "holder": self.identity,
        }
        held = HeldCredentials(server=host, username=username, password=password, fingerprint=new_fp)
        reply = await self.proposals.create(
            ActionKind.RECREATE_SECRET,
            ns,
            secret,
            params,
            dry,
            actor,
            where,
            defaults.incident,
            held,
            authorised=decision,
        )
        return Submitted(reply=reply)


def registry_host(server: str) -> str:
    """A typed registry server as host[:port]: lowercased, scheme and trailing slash removed."""
    host = server.strip().lower()
    for prefix in ("https://", "http://"):
        host = host.removeprefix(prefix)
    return host.rstrip("/")
