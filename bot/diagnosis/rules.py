"""The ordered cause rules: the `Rule` type, the `RULES` table and the kubelet reasons that force a cause.

Rules run over the masked lowercase text (see `masks`); the first rule that matches names the cause. Each rule
first checks cheap substrings, and only then, if it has one, a precompiled regex. The order puts the error that
is the ROOT first: a certificate, DNS, disk or platform error wins over the wrapper words around it ("failed to
resolve reference", "failed to authorize"), network failures win over the authorisation step they interrupted,
and gRPC status codes are a last resort. Pure data and matching, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.model import Cause

__all__ = ["REASON_CAUSES", "RULES", "Rule"]


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

# Kubelet reasons (event or waiting reason) that decide the cause whatever the text says.
REASON_CAUSES: dict[str, Cause] = {
    "InvalidImageName": Cause.INVALID_IMAGE_NAME,
    "ErrImageNeverPull": Cause.NEVER_PULL,
    # kubelet's waiting reason when the runtime refused the image's signature (k8s.io/cri-api/pkg/errors).
    "SignatureValidationFailed": Cause.SIGNATURE_OR_POLICY,
    "FailedToRetrieveImagePullSecret": Cause.AUTH_FAILED,
}
