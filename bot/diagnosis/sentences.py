"""The one plain sentence a classification carries: a template per cause, filled with the message's facts. Pure.

A rule may bring a fitter sentence of its own (`Rule.sentence`); this is the sentence otherwise.
"""

from __future__ import annotations

from bot.model import Cause, Facts

__all__ = ["sentence_for"]


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


def sentence_for(cause: Cause, facts: Facts) -> str:
    """The sentence for `cause`, naming what `facts` know (image, registry, host, status, platform)."""
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
