"""The cause catalogue: for each Cause a title, one plain explanation, its scope and the Slack actions that fit. Pure.

Notes on choices the message text forces:
- `pull_secret_missing` is a refined cause. Kubelet's FailedToRetrieveImagePullSecret event ("Unable to
  retrieve some image pull secrets (regcred); attempting to pull the image may not succeed.") names a
  secret it could not read, but corpora label messages with message causes only (DESIGN.md contract), so
  the classifier files it under `auth_failed` with its own sentence; verification turns it into
  `pull_secret_missing` when inspection finds the secret absent.
- `token_expired` is refined by verification: ECR's "Your authorization token has expired" is read as
  `auth_failed` from the text, as the catalogue of message causes prescribes.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.model import REGISTRY_LEVEL_CAUSES, ActionKind, Cause

_ALWAYS = (ActionKind.REDIAGNOSE, ActionKind.SNOOZE, ActionKind.MUTE)
# Deleting the pod cannot help these: the spec or the image must change first.
NO_RETRY_CAUSES = frozenset(
    {
        Cause.INVALID_IMAGE_NAME,
        Cause.NEVER_PULL,
        Cause.TAG_NOT_FOUND,
        Cause.REPO_NOT_FOUND,
        Cause.PLATFORM_MISMATCH,
        Cause.SIGNATURE_OR_POLICY,
    }
)

# Credentials are (or may be) the problem: a new or re-linked pull secret is the fix.
SECRET_CAUSES = frozenset(
    {
        Cause.AUTH_FAILED,
        Cause.REPO_NOT_FOUND_OR_NO_ACCESS,
        Cause.PULL_SECRET_MISSING,
        Cause.PULL_SECRET_NOT_LINKED,
        Cause.PULL_SECRET_WRONG_REGISTRY,
        Cause.PULL_SECRET_MALFORMED,
        Cause.TOKEN_EXPIRED,
    }
)


@dataclass(frozen=True, slots=True)
class CauseInfo:
    """What the catalogue says about one cause."""

    cause: Cause
    title: str
    explanation: str
    registry_level: bool
    actions: tuple[ActionKind, ...]


def _info(cause: Cause, title: str, explanation: str, *extra: ActionKind) -> CauseInfo:
    return CauseInfo(cause, title, explanation, cause in REGISTRY_LEVEL_CAUSES, (*extra, *_ALWAYS))


CATALOGUE: dict[Cause, CauseInfo] = {
    i.cause: i
    for i in (
        _info(
            Cause.TAG_NOT_FOUND,
            "Tag or digest not found",
            "The registry answered that this tag or digest does not exist in the repository.",
        ),
        _info(
            Cause.REPO_NOT_FOUND_OR_NO_ACCESS,
            "Repository missing or not accessible",
            "The registry refused the repository in a way that cannot tell a missing repository from missing rights.",
            ActionKind.RECREATE_SECRET,
            ActionKind.LINK_SECRET,
        ),
        _info(
            Cause.AUTH_FAILED,
            "Registry authentication failed",
            "The registry needs credentials and the node's were missing, wrong, expired or lacked permission.",
            ActionKind.RECREATE_SECRET,
            ActionKind.LINK_SECRET,
        ),
        _info(
            Cause.RATE_LIMITED,
            "Registry rate limit",
            "The registry refused the pull because too many pulls came from this client (HTTP 429).",
            ActionKind.DELETE_POD,
        ),
        _info(
            Cause.DNS_FAILURE,
            "Registry host name does not resolve",
            "The node could not resolve the registry host name through DNS.",
            ActionKind.DELETE_POD,
        ),
        _info(
            Cause.NETWORK_TIMEOUT,
            "Registry unreachable or timing out",
            "The node could not connect to the registry, or the connection timed out, was refused or was cut.",
            ActionKind.DELETE_POD,
        ),
        _info(
            Cause.TLS_CERT,
            "Registry TLS certificate not trusted",
            "The node does not trust the registry's TLS certificate, or the registry speaks plain HTTP.",
        ),
        _info(
            Cause.PLATFORM_MISMATCH,
            "No image for the node's platform",
            "The image has no variant for the node's OS and CPU architecture.",
        ),
        _info(
            Cause.DISK_FULL,
            "Node disk full",
            "The node ran out of disk space while pulling or unpacking the image.",
            ActionKind.DELETE_POD,
        ),
        _info(
            Cause.INVALID_IMAGE_NAME,
            "Invalid image name",
            "The image reference in the pod spec does not follow the image reference grammar.",
        ),
        _info(
            Cause.NEVER_PULL,
            "Image absent and pull policy Never",
            "The image is not on the node and the container's imagePullPolicy is Never, so it is never pulled.",
        ),
        _info(
            Cause.REGISTRY_SERVER_ERROR,
            "Registry server error",
            "The registry answered with a server error (HTTP 5xx).",
            ActionKind.DELETE_POD,
        ),
        _info(
            Cause.SIGNATURE_OR_POLICY,
            "Image refused by signature or policy",
            "A signature check or an image policy on the node or in admission refused the image.",
        ),
        _info(
            Cause.OTHER,
            "Image pull failed",
            "The pull failed for a reason outside the catalogue; the raw message says more.",
        ),
        _info(
            Cause.REPO_NOT_FOUND,
            "Repository not found",
            "The repository does not exist in the registry.",
        ),
        _info(
            Cause.PULL_SECRET_MISSING,
            "Pull secret missing",
            "The pod refers to an imagePullSecret that does not exist in its namespace.",
            ActionKind.RECREATE_SECRET,
        ),
        _info(
            Cause.PULL_SECRET_NOT_LINKED,
            "No pull secret for a private registry",
            "The registry wants credentials and the pod sends none for it: the kubelet sends only the pod's own"
            " imagePullSecrets, which a ServiceAccount's are copied into when a pod is created.",
            ActionKind.LINK_SECRET,
            ActionKind.RECREATE_SECRET,
        ),
        _info(
            Cause.PULL_SECRET_WRONG_REGISTRY,
            "Pull secret for another registry",
            "The pod's pull secrets have no credentials for the image's registry host.",
            ActionKind.RECREATE_SECRET,
        ),
        _info(
            Cause.PULL_SECRET_MALFORMED,
            "Pull secret malformed",
            "A pull secret of the pod cannot be read as a Docker config (wrong type, bad JSON or bad base64).",
            ActionKind.RECREATE_SECRET,
        ),
        _info(
            Cause.TOKEN_EXPIRED,
            "Registry token expired",
            "The pull secret holds a registry token that has expired and must be renewed.",
            ActionKind.RECREATE_SECRET,
        ),
        _info(
            Cause.NODE_DISK_PRESSURE,
            "Node under disk pressure",
            "The node reports DiskPressure, so image pulls and unpacking fail for lack of space.",
            ActionKind.DELETE_POD,
        ),
    )
}


def info(cause: Cause) -> CauseInfo:
    """The catalogue entry for `cause`."""
    return CATALOGUE[cause]
