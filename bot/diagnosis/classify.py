"""Message classifier: one pull-failure message -> Classification. Pure, never raises.

The message is normalised (whitespace collapsed, JSON escapes undone), then image references, URLs and
host names are masked so that names such as `kube-proxy`, `timeout-svc` or a tag `404` cannot trigger a
rule. Ordered, named rules run over the masked lowercase text; the first match names the cause. Each rule
first checks cheap substrings, and only then, if it has one, a precompiled regex. The order puts the
error that is the ROOT first: a certificate, DNS, disk or platform error wins over the wrapper words around
it ("failed to resolve reference", "failed to authorize"), network failures win over the authorisation
step they interrupted, and gRPC status codes are a last resort.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bot import imageref
from bot.model import Cause, Classification, Facts

__all__ = ["RULES", "Rule", "classify", "normalise"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One named rule: no veto present, and a needle present or a hint present and the regex found."""

    name: str
    cause: Cause
    needles: tuple[str, ...]  # words that alone decide the rule
    regex: re.Pattern[str] | None = None  # read only when a hint is present and no needle is
    unless: tuple[str, ...] = ()
    sentence: str | None = None  # a sentence fitter than the cause's own, when the rule knows more
    hints: tuple[str, ...] = ()  # words too broad alone: the regex decides

    def matches(self, text: str) -> bool:
        """Whether the masked, lowercase `text` triggers this rule."""
        if any(veto in text for veto in self.unless):
            return False
        if any(needle in text for needle in self.needles):
            return True
        return (
            self.regex is not None and any(hint in text for hint in self.hints) and self.regex.search(text) is not None
        )


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


# Ordered: the first rule that matches names the cause.
# Boundaries: sre only skips ahead fast when a pattern opens with a literal or a character set, so a word
# boundary is checked by a look-behind AFTER the first characters (`4(?<![\w.:/-]4)29` is "429 not inside a
# name"), never by a leading `\b` or look-behind.
RULES: tuple[Rule, ...] = (
    # Kubelet's own client-side throttle, not the registry's rate limit.
    Rule("kubelet_pull_qps", Cause.OTHER, ("pull qps exceeded",)),
    Rule("never_pull", Cause.NEVER_PULL, ("pull policy of never", "errimageneverpull")),
    Rule(
        "invalid_reference",
        Cause.INVALID_IMAGE_NAME,
        (
            "parse image reference",
            "invalid reference format",
            "failed to apply default image tag",
            "invalidimagename",
            "cannot specify 64-byte hexadecimal",
            "repository name must be lowercase",
            "repository name must be canonical",
            "invalid image name",
        ),
    ),
    # The text names a pull secret kubelet could not read; the message-cause contract files it under
    # auth_failed, and verification refines it to pull_secret_missing when the secret is absent.
    Rule(
        "pull_secret_unretrievable",
        Cause.AUTH_FAILED,
        (
            "unable to retrieve some image pull secrets",
            "unable to retrieve image pull secret",
            "unable to retrieve pull secret",
        ),
        sentence="Kubelet could not read a pull secret of the pod, so the pull goes without its credentials.",
    ),
    Rule(
        "signature_or_policy",
        Cause.SIGNATURE_OR_POLICY,
        (
            "signaturevalidationfailed",
            "source image rejected",
            "signature validation",
            "signature verification",
            "verify signature",
            "verifying signature",
            "no signatures",
            "signature was required",
            "matching signatures",
            "image signature",
            "rejected by policy",
            "policy.json",
            "policy requirement",
            "image verification failed",
            "failed to verify image",
            "imagepolicywebhook",
            "image policy webhook",
            "cosign",
        ),
    ),
    Rule(
        "admission_denied_image",
        Cause.SIGNATURE_OR_POLICY,
        (),
        _re(r"admission webhook .*denied the request"),
        hints=("admission webhook",),
    ),
    Rule(
        "tls_certificate",
        Cause.TLS_CERT,
        (
            "x509",
            "certificate signed by unknown authority",
            "unknown authority",
            "certificate is valid for",
            "certificate has expired",
            "certificate is not valid",
            "failed to verify certificate",
            "certificate verify failed",
            "server gave http response to https client",
            "does not look like a tls handshake",
            "tls: bad certificate",
            "tls: unrecognized name",
            "tls: handshake failure",
            "tls: internal error",
            "tls: protocol version",
            "remote error: tls",
        ),
    ),
    Rule(
        "disk_full",
        Cause.DISK_FULL,
        ("no space left on device", "disk quota exceeded", "not enough space", "insufficient disk space"),
    ),
    Rule(
        "dns_failure",
        Cause.DNS_FAILURE,
        (
            "no such host",
            "server misbehaving",
            "temporary failure in name resolution",
            "name or service not known",
            "nodename nor servname",
            "no address associated with hostname",
            "could not resolve host",
        ),
        _re(r"lookup <host>(?: on [^:]+(?::\d+)?)?: |name resolution|not known|servname|no address associated"),
        hints=("lookup <host>",),
    ),
    Rule(
        "platform_mismatch",
        Cause.PLATFORM_MISMATCH,
        (
            "no matching manifest for",
            "no match for platform",
            "no match for current platform",
            "could not find platform",
            "no image found in manifest list for architecture",
            "does not match the specified platform",
            "cannot be used on this platform",
            "in the manifest list entries",
            "no manifest matching platform",
        ),
        _re(
            r"image with reference .* was found but|no matching manifest|no image found in manifest list"
            r"|specified platform|manifest list entries"
        ),
        hints=("image with reference",),
    ),
    Rule(
        "rate_limited",
        Cause.RATE_LIMITED,
        ("toomanyrequests", "too many requests", "rate limit", "rate exceeded", "throttl", "ratelimit"),
        _re(r"4(?<![\w.:/-]4)29(?![\w.:/-])"),
        hints=("429",),
    ),
    Rule(
        "proxy_refused",
        Cause.NETWORK_TIMEOUT,
        ("proxy authentication required", "proxyconnect", "proxy error", "bad response from proxy"),
        _re(r"4(?<![\w.:/-]4)07 "),
        hints=("407",),
    ),
    Rule(
        "registry_5xx",
        Cause.REGISTRY_SERVER_ERROR,
        (
            "internal server error",
            "bad gateway",
            "service unavailable",
            "gateway timeout",
            "gateway time-out",
            "insufficient storage",
        ),
        _re(r"status(?: code)?(?: \[[^\]]*\])?(?: from [^:]*)?:? (?:<[a-z-]*url>:? )?5\d\d\b|http 5\d\d\b"),
        unless=("http2: server sent goaway",),
        hints=("50", "status"),
    ),
    Rule(
        "unsupported_manifest",
        Cause.OTHER,
        (
            "prettyjws",
            "schema 1",
            "schema1",
            "schema version 1",
            "unsupported manifest",
            "unexpected media type",
            "media type",
            "unknown media type",
            "unexpected commit digest",
            "digest mismatch",
            "content size",
            "unexpected eof",
            "failed precondition",
        ),
        unless=("manifest unknown", "manifest_unknown"),
    ),
    Rule(
        "local_permission",
        Cause.OTHER,
        ("read-only file system",),
        _re(
            r"(?:open|mkdir|lchown|chown|chmod|remove|rename|write|read|stat|mknod|setxattr|lsetxattr|mount|symlink"
            r"|link|unlinkat|openat|mkdirat) /[^:]*: (?:permission denied|operation not permitted)"
        ),
        hints=("permission denied", "operation not permitted"),
    ),
    Rule(
        "network_failure",
        Cause.NETWORK_TIMEOUT,
        (
            "timeout",
            "timed out",
            "deadline exceeded",
            "context canceled",
            "connection refused",
            "network is unreachable",
            "host is unreachable",
            "no route to host",
            "connection reset",
            "request canceled",
            "broken pipe",
            "no progress",
            "goaway",
            "connection closed",
            "use of closed network connection",
            "registry is unavailable",
            "dial tcp",
        ),
        _re(r"(?:url>|\"):? eof\b|: eof$|network (?:error|is down)|unreachable|closed network connection"),
        unless=("code = unavailable desc = connection error",),
        hints=("eof", "network"),
    ),
    Rule(
        "repo_not_found_or_no_access",
        Cause.REPO_NOT_FOUND_OR_NO_ACCESS,
        (
            "pull access denied",
            "repository does not exist",
            "insufficient_scope",
            "requested access to the resource is denied",
            "name unknown",
            "name_unknown",
            "repository name not known",
            "does not exist in the registry",
            "does not exist or no pull access",
        ),
        _re(r"denied(?:(?<=^denied)|(?<=: denied))\.?$|anonymous token.*4(?<!\w4)03\b|name.unknown"),
        hints=("anonymous token", "denied"),
    ),
    # The registry's DENIED code with a message of its own (GitLab `denied: access forbidden`, Artifact Registry
    # `denied: Permission "..." denied on resource`) cannot tell a missing repository from missing rights, unless
    # the text is about credentials: a token endpoint refusal or ECR's `denied: Your authorization token has
    # expired` stay auth_failed.
    Rule(
        "registry_denied",
        Cause.REPO_NOT_FOUND_OR_NO_ACCESS,
        (),
        _re(r"denied: (?:(?<=^denied: )|(?<=: denied: ))"),
        unless=("token", "credential", "authenticat", "unauthori", "password", "failed to authorize"),
        hints=("denied: ",),
    ),
    Rule(
        "missing_blob",
        Cause.OTHER,
        ("blob unknown", "blob_unknown"),
        _re(r"(?:<blob-url>|content descriptor <digest> \((?![^)]*(?:manifest|index))[^)]*\)).*not found|blob.unknown"),
        hints=("<blob-url>", "content descriptor"),
    ),
    Rule(
        "forbidden_unexplained",
        Cause.REPO_NOT_FOUND_OR_NO_ACCESS,
        ("403 forbidden",),
        _re(r": forbidden\)?$"),
        hints=(": forbidden",),
        unless=(
            "oauth token",
            "permission",
            "unauthorized",
            "authenticat",
            "credentials",
            "token has expired",
            "denied",
            "access forbidden",
            "not authorized",
        ),
    ),
    Rule(
        "manifest_unknown",
        Cause.TAG_NOT_FOUND,
        ("manifest unknown", "manifest_unknown", "tag does not exist", "no such manifest", "tag unknown"),
        _re(
            r"manifest.unknown|manifest for <ref> not found|reading manifest <ref>.*not found"
            r"|failed to resolve reference \"<ref>\": (?:\S+: )?not found|<ref>: not found"
            r"|image <ref> not found|4(?<![\w.:/-]4)04 not found|status(?: code)?:? 404\b"
            r"|resolve reference.*: not found$"
        ),
        hints=("not found", "404"),
    ),
    Rule(
        "auth_failed",
        Cause.AUTH_FAILED,
        (
            "unauthorized",
            "authentication required",
            "no basic auth credentials",
            "token has expired",
            "failed to authorize",
            "oauth token",
            "username",
            "password",
            "authentication failed",
            "forbidden",
            "denied",
            "not authorized",
            "unauthenticated",
            "permissiondenied",
            "credentials",
            "authorization",
            "access token",
        ),
        _re(r"4(?<![\w.:/-]4)0[13](?![\w.:/-])|unauthori[sz]ed"),
        hints=("401", "403"),
    ),
    Rule("grpc_not_found", Cause.TAG_NOT_FOUND, ("code = notfound",)),
    Rule("grpc_deadline", Cause.NETWORK_TIMEOUT, ("code = deadlineexceeded",)),
)

_REASON_CAUSES: dict[str, Cause] = {
    "InvalidImageName": Cause.INVALID_IMAGE_NAME,
    "ErrImageNeverPull": Cause.NEVER_PULL,
    "FailedToRetrieveImagePullSecret": Cause.AUTH_FAILED,
}


def _url_label(match: re.Match[str]) -> str:
    # The match is a whole run of URL characters (greedy: no per-character look-ahead); a colon that ends the run
    # before a space or the end is the message's own separator and stays, as long as the URL keeps a character.
    url, tail = match.group(), ""
    if url[-1] == ":" and url.find("://") + 4 < len(url) and match.string[match.end() : match.end() + 1] != '"':
        url, tail = url[:-1], ":"
    word = url[:-1]  # a path word needs a character after it
    if "/blobs/" in word:
        return "<blob-url>" + tail
    return ("<manifest-url>" if "/manifests/" in word else "<url>") + tail


# Masks, applied in order to the normalised lowercase text when their needle is present; each keeps the
# words that rules read and hides names (images, URLs, hosts, addresses, secrets, digests).
_MASKS: tuple[tuple[str, re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # One pass for every URL: a blob URL, a manifest URL or any other URL, each named for what it is.
    ("://", re.compile(r"https?://[^\s\"]+"), _url_label),
    ("docker://", re.compile(r"docker://[^\s\"]+?(?=:\s|:$|\"|\s|$)"), "<ref>"),
    # Quoted names (images, references, hosts); quoted bare words such as "UNAUTHORIZED" stay readable.
    ('"', re.compile(r"\"[^\"\s]*[^a-z_\"\s][^\"\s]*\""), '"<ref>"'),
    (
        "reading manifest",
        re.compile(r"(reading manifest)(?<!\wreading manifest) \S+ in [^\s:]+(?::\d+)?[^\s:]*"),
        r"\1 <ref> in <ref>",
    ),
    ("manifest for", re.compile(r"(manifest for)(?<!\wmanifest for) \S+ (not found)"), r"\1 <ref> \2"),
    ("access denied for", re.compile(r"(pull access denied for)(?<!\wpull access denied for) [^\s,]+"), r"\1 <ref>"),
    ("not found", re.compile(r"(image)(?<!\wimage) [^\s\"]+ (not found)"), r"\1 <ref> \2"),
    ("lookup ", re.compile(r"(lookup)(?<!\wlookup) [^\s:]+"), r"\1 <host>"),
    ("dial tcp ", re.compile(r"(dial tcp)(?<!\wdial tcp) (?:\[[^\]]*\]|[^\s:\[]+):\d+"), r"\1 <addr>"),
    (" on ", re.compile(r"(on)(?<!\won) (?:\[[^\]]*\]|\d+\.\d+\.\d+\.\d+):\d+"), r"\1 <addr>"),
    (
        "->",
        re.compile(r"((?:read(?<!\wread)|write(?<!\wwrite)) (?:udp|tcp)) \S+->\S+?(?=:\s|$)"),
        r"\1 <addr>",
    ),
    (
        "host ",
        re.compile(
            r"(pulling from host(?<!\wpulling from host)|to host(?<!\wto host)|from host(?<!\wfrom host))"
            r" [^\s:]+(?::\d+)?"
        ),
        r"\1 <host>",
    ),
    ("secret", re.compile(r"(secret(?<!\wsecret)s?) \([^)]*\)"), r"\1 (<secret>)"),
    ("sha", re.compile(r"sha(?<!\wsha)(?:256|384|512):[0-9a-f]+"), "<digest>"),
    (
        "/",
        re.compile(r"\b[a-z0-9-][a-z0-9.-]*\.[a-z]{2,}(?::\d+)?(?:/[a-z0-9._-]+)+(?::[\w.-]+)?"),
        "<ref>",
    ),
)
# Every match of the last mask holds `.tld/` or `.tld:port/`: a fast pre-check before its slow scan.
_DOMAIN_PATH_RE = re.compile(r"\.[a-z]{2,}(?::\d+)?/")

_DOMAIN_PATH_MASK = _MASKS[-1][1]
_QUOTED_RE = re.compile(r"\"([^\"\s]+)\"")
_IMAGE_WORDS = ("image ", "reference ")
_IMAGE_RES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ('"', _QUOTED_RE),
    ("docker://", re.compile(r"docker://([^\s\"]+?)(?=:\s|:$|\"|\s|$)")),
    ("manifest for", re.compile(r"manifest for (\S+) not found")),
    ("access denied for", re.compile(r"pull access denied for ([^\s,]+)")),
    ("not found", re.compile(r"image(?<!\wimage) (\S+) not found")),
)
_READING_MANIFEST_RE = re.compile(r"reading manifest (\S+) in ([^\s:]+(?::\d+)?[^\s:]*)")
_PULL_HOST_RE = re.compile(r"(?:pulling from host|to host|from host) ([^\s:]+(?::\d+)?)")
_URL_HOST_RE = re.compile(r"https?://([^/\s\"]+)")
_REGISTRY_URL_RE = re.compile(
    r"https?://([^/\s\"]+)/v2/(?:([a-z0-9._/-]+?)/(?:manifests|blobs|tags)/([^\s\"?]+?)(?=:\s|:$|\"|\s|\?|$))?"
)
_TOKEN_SERVICE_RE = re.compile(r"[?&]service=([a-z0-9.:-]+)", re.I)
_LOOKUP_RE = re.compile(r"lookup(?<!\wlookup) ([^\s:]+)")
_DIAL_RE = re.compile(r"dial tcp(?<!\wdial tcp) (\[[^\]]*\]|[^\s:\[]+):\d+")
_HOST_RES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("lookup ", _LOOKUP_RE),
    ("dial tcp ", _DIAL_RE),
    ("host ", _PULL_HOST_RE),
    ("://", _URL_HOST_RE),
)
_STATUS_RES: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = (
    (
        (
            " unauthorized",
            " forbidden",
            " not found",
            " too many",
            " internal",
            " bad ",
            " service",
            " gateway",
            " proxy",
            " method",
            " request",
            " not ",
            " insufficient",
            " conflict",
        ),
        re.compile(
            r"([1-5](?<!\w.)\d\d) (?:unauthorized|forbidden|not found|too many requests|internal server error"
            r"|bad gateway|service unavailable|gateway time-?out|proxy authentication required|bad request"
            r"|method not allowed|request timeout|not implemented|insufficient storage|conflict|not acceptable)"
        ),
    ),
    (("status",), re.compile(r"status(?: code)?(?: \[[^\]]*\])?(?: from [^:]*)?:? (?:<[a-z-]*url>:? )?([1-5]\d\d)\b")),
    (("http ",), re.compile(r"http(?<!\whttp) ([1-5]\d\d)\b")),
    (("429", "50"), re.compile(r"((?:4(?=29)|5)(?<![\w.:/-].)\d\d)(?![\w.:/-])")),
)
_STATUS_DIGITS_RE = re.compile(r"[1-5]\d\d")
_PLATFORM_RE = re.compile(
    r"((?:linux(?<!\wlinux)|windows(?<!\wwindows)|darwin(?<!\wdarwin)|freebsd(?<!\wfreebsd))/[a-z0-9_]+(?:/v\d+)?)\b"
)
_ARCH_OS_RE = re.compile(r"for architecture ([a-z0-9_]+)(?:, variant \"?([a-z0-9]*)\"?)?, os ([a-z0-9]+)")


def normalise(message: str) -> str:
    """Collapse whitespace and undo JSON-style quote escapes, so every runtime's text reads alike."""
    text = message.replace('\\"', '"') if '\\"' in message else message
    # isprintable() is False for every whitespace character but the space: such text with no double, leading or
    # trailing space is already what split/join would give.
    if "  " not in text and text.isprintable() and text[:1] != " " and text[-1:] != " ":
        return text
    return " ".join(text.split())


def _mask(low: str) -> str:
    for needle, pattern, replacement in _MASKS:
        if needle in low and (pattern is not _DOMAIN_PATH_MASK or _DOMAIN_PATH_RE.search(low)):
            low = pattern.sub(replacement, low)
    return low


_NO_RULE = Rule("none", Cause.OTHER, ())


def _trie_pattern(words: Iterable[str]) -> re.Pattern[str]:
    """One regex whose match at a position is the LONGEST of `words` starting there (a trie, so no backtracking)."""
    trie: dict[str, dict[str, Any]] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        branches = [re.escape(char) + emit(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if "" in node:
            return f"(?:{body})?"
        return body

    return re.compile(emit(trie))


# The combined pre-filter: every needle, hint and veto of every rule in one trie regex, scanned once per message.
# A hit at a position is the longest word starting there; the words inside it are present too, so each hit maps
# to bit sets (bit i = RULES[i]) of the needles, hints and vetoes it contains. Resuming the scan one character
# after each hit's start finds every occurrence, so "which words are present" is exact, as with `in`.
_WORDS: tuple[str, ...] = tuple(sorted({w for r in RULES for w in (*r.needles, *r.hints, *r.unless)}))
_WORD_RE = _trie_pattern(_WORDS)


def _bits(word: str, words_of: Callable[[Rule], tuple[str, ...]]) -> int:
    return sum(1 << i for i, rule in enumerate(RULES) if any(w in word for w in words_of(rule)))


# word -> (needle bits, hint bits, veto bits)
_WORD_BITS: dict[str, tuple[int, int, int]] = {
    word: (_bits(word, lambda r: r.needles), _bits(word, lambda r: r.hints), _bits(word, lambda r: r.unless))
    for word in _WORDS
}


def _pick_rule(masked_low: str) -> Rule:
    search = _WORD_RE.search
    bits = _WORD_BITS
    needles = hints = vetoes = 0
    found = search(masked_low)
    while found is not None:
        n, h, v = bits[found.group()]
        needles |= n
        hints |= h
        vetoes |= v
        found = search(masked_low, found.start() + 1)
    candidates = (needles | hints) & ~vetoes
    while candidates:
        low_bit = candidates & -candidates
        rule = RULES[low_bit.bit_length() - 1]
        if needles & low_bit or (rule.regex is not None and rule.regex.search(masked_low) is not None):
            return rule
        candidates ^= low_bit
    return _NO_RULE


def _image_from(text: str, low: str) -> imageref.ImageRef | None:
    for needle, pattern in _IMAGE_RES:
        if needle not in low:
            continue
        for match in pattern.finditer(text):
            if pattern is _QUOTED_RE and not low.endswith(_IMAGE_WORDS, 0, match.start()):
                continue
            ref = imageref.try_parse(match.group(1))
            if ref is not None:
                return ref
    if "reading manifest" in low:
        found = _READING_MANIFEST_RE.search(text)
        if found:
            reference, repo = found.group(1), found.group(2)
            sep = "@" if ":" in reference else ":"
            return imageref.try_parse(f"{repo}{sep}{reference}")
    return None


def _status_from(masked_low: str) -> int | None:
    if _STATUS_DIGITS_RE.search(masked_low) is None:  # every status pattern holds one; most messages have none
        return None
    for needles, pattern in _STATUS_RES:
        for needle in needles:
            if needle in masked_low:
                for match in pattern.finditer(masked_low):
                    start = match.start(1)
                    if start == 0 or masked_low[start - 1] not in ".:/-":
                        return int(match.group(1))
                break
    return None


def _host_from(text: str, low: str) -> str | None:
    for needle, pattern in _HOST_RES:
        if needle in low:
            match = pattern.search(text)
            if match:
                return match.group(1).rstrip(".").lower()
    return None


def _platform_from(low: str) -> str | None:
    match = _PLATFORM_RE.search(low)
    if match:
        return match.group(1)
    match = _ARCH_OS_RE.search(low)
    if match:
        arch, variant, os_name = match.group(1), match.group(2), match.group(3)
        return f"{os_name}/{arch}/{variant}" if variant else f"{os_name}/{arch}"
    return None


def _facts(text: str, low: str, masked_low: str, cause: Cause) -> Facts:
    ref = _image_from(text, low)
    registry = repository = reference = None
    if ref is not None:
        registry, repository, reference = ref.registry, ref.repository, ref.reference
    elif "/v2/" in low and (url := _REGISTRY_URL_RE.search(text)) is not None:
        registry = imageref.registry_key(url.group(1))
        repository, reference = url.group(2), url.group(3)
    else:
        host: re.Match[str] | None = _PULL_HOST_RE.search(text) if "host " in low else None
        if host is None and "service=" in low:
            host = _TOKEN_SERVICE_RE.search(text)
        if host is not None:
            registry = imageref.registry_key(host.group(1))
    return Facts(
        registry=registry,
        repository=repository,
        reference=reference,
        http_status=_status_from(masked_low),
        platform=_platform_from(low) if cause is Cause.PLATFORM_MISMATCH else None,
        host=_host_from(text, low),
    )


def _image_words(facts: Facts) -> str:
    if facts.registry and facts.repository:
        sep = "@" if facts.reference and ":" in facts.reference else ":"
        ref = f"{sep}{facts.reference}" if facts.reference else ""
        return f"the image {facts.registry}/{facts.repository}{ref}"
    return "the image"


_SENTENCES: dict[Cause, str] = {
    Cause.TAG_NOT_FOUND: "{where} has no tag or digest {reference} in the repository {repository}.",
    Cause.REPO_NOT_FOUND_OR_NO_ACCESS: "{where} refused {image}{status}: the repository does not exist"
    " or the node may not read it.",
    Cause.AUTH_FAILED: "{where} refused the node's credentials for {image}{status}: they are missing, wrong,"
    " expired or lack permission.",
    Cause.RATE_LIMITED: "{where} rate-limited the pull of {image}{status}.",
    Cause.DNS_FAILURE: "The node could not resolve the host name {host}.",
    Cause.NETWORK_TIMEOUT: "The node could not reach {host}: the connection timed out, was refused or cut.",
    Cause.TLS_CERT: "The node does not trust the TLS certificate of {host}, or the registry speaks plain HTTP.",
    Cause.PLATFORM_MISMATCH: "{image} has no variant for the node's platform{platform}.",
    Cause.DISK_FULL: "The node ran out of disk space while pulling {image}.",
    Cause.INVALID_IMAGE_NAME: "The image reference in the pod spec is not a valid image name.",
    Cause.NEVER_PULL: "{image} is not on the node and the pull policy is Never.",
    Cause.REGISTRY_SERVER_ERROR: "{where} answered with a server error{status}.",
    Cause.SIGNATURE_OR_POLICY: "A signature check or image policy refused {image}.",
    Cause.PULL_SECRET_MISSING: "An imagePullSecret of the pod does not exist in its namespace.",
}
_TAG_UNKNOWN_SENTENCE = "{where} has no such tag or digest for {image}."
_OTHER_SENTENCE = "The pull failed for a reason outside the catalogue; see the raw message."


def _sentence(cause: Cause, facts: Facts) -> str:
    template = _SENTENCES.get(cause, _OTHER_SENTENCE)
    if cause is Cause.TAG_NOT_FOUND and not (facts.reference and facts.repository):
        template = _TAG_UNKNOWN_SENTENCE
    if "{" not in template:
        return template
    sentence = template.format(
        image=_image_words(facts),
        where=f"the registry {facts.registry or facts.host}" if facts.registry or facts.host else "the registry",
        status=f" (HTTP {facts.http_status})" if facts.http_status else "",
        host=facts.host or facts.registry or "the registry host",
        reference=facts.reference,
        repository=facts.repository,
        platform=f" ({facts.platform})" if facts.platform else "",
    )
    return sentence[0].upper() + sentence[1:]


def classify(message: str, event_reason: str | None = None, waiting_reason: str | None = None) -> Classification:
    """Name the cause of one pull-failure message; unknown text gives Cause.OTHER with the raw text."""
    raw = message if isinstance(message, str) else str(message)
    text = normalise(raw)
    low = text.lower()
    masked_low = _mask(low)
    rule = _pick_rule(masked_low)
    cause, sentence = rule.cause, rule.sentence
    for reason in (event_reason, waiting_reason):
        forced = _REASON_CAUSES.get(reason or "")
        if forced is not None and forced is not cause:
            cause, sentence = forced, None
            break
    facts = _facts(text, low, masked_low, cause)
    return Classification(cause=cause, facts=facts, sentence=sentence or _sentence(cause, facts), raw=raw)


def explain(message: str, event_reason: str | None = None, waiting_reason: str | None = None) -> str:
    """The name of the rule that decides `message` (for debugging the catalogue)."""
    for reason in (event_reason, waiting_reason):
        if reason in _REASON_CAUSES:
            return f"reason:{reason}"
    return _pick_rule(_mask(normalise(message).lower())).name
