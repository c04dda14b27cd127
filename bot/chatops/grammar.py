"""The strict, total parser of `/imagepull` command text: a frozen `Command`, or a `ParseError` with a usage line.

Pure (no I/O). Every name is validated as Kubernetes validates it (DNS-1123 label for namespaces, DNS-1123
subdomain for pods, secrets and ServiceAccounts), hosts as `host[:port]`, and any character outside the grammar
(shell metacharacters, quotes, `<`/`>` of Slack mentions and mrkdwn links, control characters) is refused with a
message that names it. `parse` never raises anything but `ParseError`, and never echoes hostile text verbatim: the
messages quote at most one validated-safe character or a length.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, fields
from enum import StrEnum

MAX_TEXT = 500
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", re.ASCII)
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", re.ASCII)
_CLUSTER = re.compile(r"[a-z0-9]([-a-z0-9._]*[a-z0-9])?", re.ASCII)
_HOST_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", re.ASCII)
_ALLOWED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:/=")
_DEPLOY_PREFIXES = ("deploy/", "deployment/", "deployments/", "deployment.apps/")
_POD_PREFIXES = ("pod/", "pods/", "po/")


class Verb(StrEnum):
    """What a command asks; the last four come from buttons only, never from typed text."""

    DIAGNOSE = "diagnose"
    SCAN = "scan"
    RECREATE_SECRET = "recreate-secret"  # noqa: S105 (a field or verb name, not a password)
    DELETE_POD = "delete-pod"
    LINK_SECRET = "link-secret"  # noqa: S105 (a field or verb name, not a password)
    STATUS = "status"
    REPORT = "report"
    HELP = "help"
    REDIAGNOSE = "rediagnose"
    SNOOZE = "snooze"
    MUTE = "mute"


TYPED_VERBS: tuple[Verb, ...] = (
    Verb.DIAGNOSE,
    Verb.SCAN,
    Verb.RECREATE_SECRET,
    Verb.DELETE_POD,
    Verb.LINK_SECRET,
    Verb.STATUS,
    Verb.REPORT,
    Verb.HELP,
)

USAGE: dict[Verb, str] = {
    Verb.DIAGNOSE: "/imagepull diagnose <namespace>/<pod> | <pod> -n <namespace> | deploy/<name> -n <namespace>",
    Verb.SCAN: "/imagepull scan [--deep] [<namespace>]",
    Verb.RECREATE_SECRET: "/imagepull recreate-secret <namespace>/<secret> [--from <namespace>/<secret>]"
    " [--server <host[:port]>]",
    Verb.DELETE_POD: "/imagepull delete-pod <namespace>/<pod>",
    Verb.LINK_SECRET: "/imagepull link-secret <namespace>/<serviceaccount> <secret>",
    Verb.STATUS: "/imagepull status",
    Verb.REPORT: "/imagepull report [7d|30d]",
    Verb.HELP: "/imagepull help",
}
CLUSTER_NOTE = "Every command accepts --cluster <name> (default: the cluster of the bot that answers)."


class ParseError(Exception):
    """Command text that does not fit the grammar; `message` and `usage` are safe to show as they are."""

    def __init__(self, message: str, usage: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage

    def __str__(self) -> str:
        return f"{self.message}\nUsage: {self.usage}" if self.usage else self.message


@dataclass(frozen=True, slots=True)
class Command:
    """One validated request; `name` is the pod, secret, ServiceAccount or Deployment the verb acts on."""

    verb: Verb
    namespace: str | None = None
    name: str | None = None
    workload_kind: str | None = None  # "Deployment" when diagnosing deploy/<name>
    secret: str | None = None  # link-secret: the secret to add to the ServiceAccount
    source_namespace: str | None = None  # recreate-secret --from
    source_name: str | None = None
    server: str | None = None  # recreate-secret --server
    cluster: str | None = None
    incident: str | None = None  # set by buttons, never by typed text
    deep: bool = False  # scan --deep: the latent-failure scan of every workload

    def to_params(self) -> dict[str, str]:
        """The command as flat strings (for a forwarded request row); None fields are left out."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and value is not False:
                out[f"cmd_{f.name}"] = str(value)
        return out

    @classmethod
    def from_params(cls, params: dict[str, str]) -> Command:
        """The inverse of `to_params` (raises ValueError on an unknown verb)."""
        values: dict[str, object] = {}
        for f in fields(cls):
            key = f"cmd_{f.name}"
            if key in params:
                values[f.name] = params[key] == "True" if f.name == "deep" else params[key]
        values["verb"] = Verb(str(values.get("verb", "")))
        return cls(**values)  # type: ignore[arg-type]

    @property
    def target(self) -> str:
        """`namespace/name` (or what there is of it), for messages."""
        return "/".join(x for x in (self.namespace, self.name) if x)


# ---- validation ----


def is_label(value: str) -> bool:
    """A DNS-1123 label: what Kubernetes accepts as a namespace name."""
    return len(value) <= 63 and _LABEL.fullmatch(value) is not None


def is_subdomain(value: str) -> bool:
    """A DNS-1123 subdomain: what Kubernetes accepts as a pod, secret or ServiceAccount name."""
    return len(value) <= 253 and _SUBDOMAIN.fullmatch(value) is not None


def is_cluster_name(value: str) -> bool:
    """A cluster name as the bot's settings spell it: lowercase letters, digits, '-', '.', '_'."""
    return len(value) <= 63 and _CLUSTER.fullmatch(value) is not None


def is_host(value: str) -> bool:
    """`host[:port]`: DNS labels or an IPv4 address, optional port 1-65535, lowercase, no scheme or path."""
    host, colon, port = value.partition(":")
    if colon and (not port.isdigit() or not 0 < int(port) < 65536 or len(port) > 5):
        return False
    if not host or len(host) > 253:
        return False
    return all(_HOST_LABEL.fullmatch(label) is not None and len(label) <= 63 for label in host.split("."))


def _check(what: str, value: str, usage: str, *, label: bool = False) -> str:
    ok = is_label(value) if label else is_subdomain(value)
    if not ok:
        rule = (
            "a DNS-1123 label (lowercase letters, digits and '-', at most 63 characters)"
            if label
            else "a DNS-1123 name (lowercase letters, digits, '-' and '.', at most 253 characters)"
        )
        raise ParseError(f"invalid {what}: it must be {rule}, starting and ending with a letter or digit.", usage)
    return value


def _describe(ch: str) -> str:
    """A character named safely: printable ASCII punctuation quoted, anything else by its code point."""
    if ch.isascii() and ch.isprintable() and ch not in "`<>&":
        return f"'{ch}'"
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" ({name.lower()})" if name else "")


def _screen(text: str) -> None:
    """Refuse text outside the grammar before any tokenising, naming the first offending character."""
    if len(text) > MAX_TEXT:
        raise ParseError(f"command text too long ({len(text)} characters; at most {MAX_TEXT}).", USAGE[Verb.HELP])
    if "<" in text or ">" in text:
        raise ParseError(
            "Slack mentions, channel links and mrkdwn links (text in '<…>') are not accepted in commands;"
            " type plain names.",
            USAGE[Verb.HELP],
        )
    for ch in text:
        if ch in _ALLOWED or ch in " \t":
            continue
        if ch in ";|&$`()\\\"'*?!{}[]~#%^,+@":
            raise ParseError(
                f"character {_describe(ch)} is not allowed: commands take plain Kubernetes names, nothing a shell"
                " would interpret.",
                USAGE[Verb.HELP],
            )
        raise ParseError(
            f"character {_describe(ch)} is not allowed: use letters, digits, '-', '.', '/', ':' and spaces.",
            USAGE[Verb.HELP],
        )


# ---- tokens ----


@dataclass(slots=True)
class _Args:
    positional: list[str]
    flags: dict[str, str]


REPORT_WINDOWS = {"7d": 7, "30d": 30}
_SWITCHES = {"--deep": "deep"}  # options without a value
_FLAG_ALIASES = {
    "-n": "namespace",
    "--namespace": "namespace",
    "--cluster": "cluster",
    "--from": "from",
    "--server": "server",
}


def _split(tokens: list[str], usage: str, allowed: frozenset[str]) -> _Args:
    args = _Args([], {})
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in _SWITCHES:
            switch = _SWITCHES[token]
            if switch not in allowed:
                raise ParseError(f"unknown option {token!r} for this command.", usage)
            if switch in args.flags:
                raise ParseError(f"option {token} given twice.", usage)
            args.flags[switch] = "yes"
        elif token.startswith("-"):
            flag, eq, inline = token.partition("=")
            name = _FLAG_ALIASES.get(flag)
            if name is None or name not in allowed:
                raise ParseError(f"unknown option {flag[:40]!r} for this command.", usage)
            if name in args.flags:
                raise ParseError(f"option {flag} given twice.", usage)
            if eq:
                value = inline
            else:
                if i + 1 >= len(tokens) or tokens[i + 1].startswith("-"):
                    raise ParseError(f"option {flag} needs a value.", usage)
                i += 1
                value = tokens[i]
            if not value:
                raise ParseError(f"option {flag} needs a value.", usage)
            args.flags[name] = value
        else:
            if "=" in token:
                raise ParseError("'=' is only allowed in --option=value.", usage)
            args.positional.append(token)
        i += 1
    return args


def _ns_name(token: str, what: str, usage: str, namespace_flag: str | None) -> tuple[str, str]:
    """`ns/name`, or `name` with `-n ns`; both validated."""
    if token.count("/") > 1:
        raise ParseError(f"expected <namespace>/<{what}>, got too many '/'.", usage)
    if "/" in token:
        ns, _, name = token.partition("/")
        if namespace_flag is not None and namespace_flag != ns:
            raise ParseError("the namespace is given twice, differently (in the name and with -n).", usage)
    elif namespace_flag is not None:
        ns, name = namespace_flag, token
    else:
        raise ParseError(f"which namespace? Write <namespace>/<{what}> or add -n <namespace>.", usage)
    if not ns:
        raise ParseError("the namespace is empty.", usage)
    if not name:
        raise ParseError(f"the {what} name is empty.", usage)
    return _check("namespace", ns, usage, label=True), _check(f"{what} name", name, usage)


def _cluster(args: _Args, usage: str) -> str | None:
    value = args.flags.get("cluster")
    if value is None:
        return None
    if not is_cluster_name(value):
        raise ParseError(
            "invalid cluster name: lowercase letters, digits, '-', '.' and '_', at most 63 characters.", usage
        )
    return value


def _count(args: _Args, n: int | tuple[int, int], usage: str) -> None:
    low, high = (n, n) if isinstance(n, int) else n
    got = len(args.positional)
    if got < low:
        raise ParseError("missing argument.", usage)
    if got > high:
        raise ParseError(f"too many arguments ({got}; expected {high if low == high else f'at most {high}'}).", usage)


# ---- verbs ----


def parse(text: str) -> Command:
    """Parse `/imagepull` text into a validated Command; raises ParseError (and nothing else) otherwise."""
    if not isinstance(text, str):
        raise ParseError("command text must be text.", USAGE[Verb.HELP])
    _screen(text)
    tokens = text.split()
    if not tokens:
        return Command(Verb.HELP)
    head, rest = tokens[0].lower(), tokens[1:]
    verb = next((v for v in TYPED_VERBS if v.value == head), None)
    if verb is None:
        known = ", ".join(v.value for v in TYPED_VERBS)
        raise ParseError(f"unknown command; the commands are: {known}.", USAGE[Verb.HELP])
    usage = USAGE[verb]
    match verb:
        case Verb.HELP | Verb.STATUS:
            args = _split(rest, usage, frozenset({"cluster"}))
            _count(args, 0, usage)
            return Command(verb, cluster=_cluster(args, usage))
        case Verb.REPORT:
            args = _split(rest, usage, frozenset({"cluster"}))
            _count(args, (0, 1), usage)
            window = args.positional[0].lower() if args.positional else "7d"
            if window not in REPORT_WINDOWS:
                raise ParseError("the report covers 7d or 30d.", usage)
            return Command(verb, name=window, cluster=_cluster(args, usage))
        case Verb.SCAN:
            args = _split(rest, usage, frozenset({"cluster", "namespace", "deep"}))
            _count(args, (0, 1), usage)
            ns_values = [*args.positional, *([args.flags["namespace"]] if "namespace" in args.flags else [])]
            if len(ns_values) > 1:
                raise ParseError("give the namespace once.", usage)
            ns = _check("namespace", ns_values[0], usage, label=True) if ns_values else None
            return Command(verb, namespace=ns, cluster=_cluster(args, usage), deep="deep" in args.flags)
        case Verb.DIAGNOSE:
            return _diagnose(rest, usage)
        case Verb.DELETE_POD:
            args = _split(rest, usage, frozenset({"cluster", "namespace"}))
            _count(args, 1, usage)
            token = _strip_prefix(args.positional[0], _POD_PREFIXES, usage)
            ns, name = _ns_name(token, "pod", usage, args.flags.get("namespace"))
            return Command(verb, namespace=ns, name=name, cluster=_cluster(args, usage))
        case Verb.LINK_SECRET:
            args = _split(rest, usage, frozenset({"cluster", "namespace"}))
            _count(args, 2, usage)
            ns, sa = _ns_name(args.positional[0], "serviceaccount", usage, args.flags.get("namespace"))
            secret = _check("secret name", args.positional[1], usage)
            return Command(verb, namespace=ns, name=sa, secret=secret, cluster=_cluster(args, usage))
        case Verb.RECREATE_SECRET:
            return _recreate(rest, usage)
    raise ParseError("unknown command.", USAGE[Verb.HELP])  # pragma: no cover - every typed verb is matched


def _strip_prefix(token: str, prefixes: tuple[str, ...], usage: str) -> str:
    lowered = token.lower()
    for prefix in prefixes:
        if lowered.startswith(prefix):
            return token[len(prefix) :]
    return token


def _diagnose(rest: list[str], usage: str) -> Command:
    args = _split(rest, usage, frozenset({"cluster", "namespace"}))
    _count(args, 1, usage)
    token = args.positional[0]
    ns_flag = args.flags.get("namespace")
    cluster = _cluster(args, usage)
    lowered = token.lower()
    deploy = next((p for p in _DEPLOY_PREFIXES if lowered.startswith(p)), None)
    if deploy is None and "/" in token and token.split("/", 1)[1].lower().startswith(_DEPLOY_PREFIXES):
        # <ns>/deploy/<name>
        ns_part, _, rest_part = token.partition("/")
        prefix = next(p for p in _DEPLOY_PREFIXES if rest_part.lower().startswith(p))
        ns, name = _ns_name(f"{ns_part}/{rest_part[len(prefix) :]}", "deployment", usage, ns_flag)
        return Command(Verb.DIAGNOSE, namespace=ns, name=name, workload_kind="Deployment", cluster=cluster)
    if deploy is not None:
        ns, name = _ns_name(token[len(deploy) :], "deployment", usage, ns_flag)
        return Command(Verb.DIAGNOSE, namespace=ns, name=name, workload_kind="Deployment", cluster=cluster)
    token = _strip_prefix(token, _POD_PREFIXES, usage)
    ns, name = _ns_name(token, "pod", usage, ns_flag)
    return Command(Verb.DIAGNOSE, namespace=ns, name=name, cluster=cluster)


def _recreate(rest: list[str], usage: str) -> Command:
    args = _split(rest, usage, frozenset({"cluster", "namespace", "from", "server"}))
    _count(args, 1, usage)
    ns, name = _ns_name(args.positional[0], "secret", usage, args.flags.get("namespace"))
    source_ns = source = None
    if "from" in args.flags:
        raw = args.flags["from"]
        if "/" not in raw:
            raise ParseError("--from takes <namespace>/<secret>.", usage)
        source_ns, source = _ns_name(raw, "secret", usage, None)
        if (source_ns, source) == (ns, name):
            raise ParseError("--from names the same secret as the one to recreate.", usage)
    server = args.flags.get("server")
    if server is not None:
        server = server.lower()
        if "://" in server or "/" in server:
            raise ParseError("--server takes host[:port], without a scheme or a path.", usage)
        if not is_host(server):
            raise ParseError("invalid --server: it must be a host name or IPv4 address, with an optional :port.", usage)
    return Command(
        Verb.RECREATE_SECRET,
        namespace=ns,
        name=name,
        source_namespace=source_ns,
        source_name=source,
        server=server,
        cluster=_cluster(args, usage),
    )


def help_text() -> str:
    """Every usage line, for `/imagepull help`."""
    lines = [USAGE[v] for v in TYPED_VERBS]
    return "\n".join(lines) + "\n" + CLUSTER_NOTE
