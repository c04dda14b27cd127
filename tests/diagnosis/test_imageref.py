"""Image reference grammar: a table of real references, invalid forms, and property tests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.imageref import DOCKER_HUB, ImageRef, InvalidImageReference, parse, registry_key, try_parse

DIGEST = "sha256:" + "a" * 64

VALID = [
    ("nginx", ImageRef("docker.io", "library/nginx", "latest", None), "docker.io/library/nginx:latest"),
    ("library/nginx", ImageRef("docker.io", "library/nginx", "latest"), "docker.io/library/nginx:latest"),
    ("docker.io/nginx:1.25", ImageRef("docker.io", "library/nginx", "1.25"), "docker.io/library/nginx:1.25"),
    ("index.docker.io/library/nginx:1", ImageRef("docker.io", "library/nginx", "1"), "docker.io/library/nginx:1"),
    (
        "registry-1.docker.io/bitnami/redis",
        ImageRef("docker.io", "bitnami/redis", "latest"),
        "docker.io/bitnami/redis:latest",
    ),
    (
        "gcr.io/google-containers/pause:3.2",
        ImageRef("gcr.io", "google-containers/pause", "3.2"),
        "gcr.io/google-containers/pause:3.2",
    ),
    (
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v1",
        ImageRef("123456789012.dkr.ecr.us-east-1.amazonaws.com", "app", "v1"),
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v1",
    ),
    ("localhost:5000/x", ImageRef("localhost:5000", "x", "latest"), "localhost:5000/x:latest"),
    ("localhost/x:dev", ImageRef("localhost", "x", "dev"), "localhost/x:dev"),
    ("127.0.0.1:5000/team/app:V1_2", ImageRef("127.0.0.1:5000", "team/app", "V1_2"), "127.0.0.1:5000/team/app:V1_2"),
    (f"ghcr.io/o/r@{DIGEST}", ImageRef("ghcr.io", "o/r", None, DIGEST), f"ghcr.io/o/r@{DIGEST}"),
    (
        f"nginx:1.25@{DIGEST}",
        ImageRef("docker.io", "library/nginx", "1.25", DIGEST),
        f"docker.io/library/nginx:1.25@{DIGEST}",
    ),
    ("quay.io/prometheus/node-exporter:v1.8.1", ImageRef("quay.io", "prometheus/node-exporter", "v1.8.1"), None),
    ("registry.k8s.io/kube-proxy:v1.30.0", ImageRef("registry.k8s.io", "kube-proxy", "v1.30.0"), None),
    ("[::1]:5000/app:1", ImageRef("[::1]:5000", "app", "1"), None),
    ("my_org/my__app--x.y:tag", ImageRef("docker.io", "my_org/my__app--x.y", "tag"), None),
    ("Registry.Example.COM/app", ImageRef("registry.example.com", "app", "latest"), None),
]

INVALID = [
    ("", "empty"),
    ("Nginx", "lowercase"),
    ("UPPER/case", "lowercase"),
    ("docker.io/Library/nginx", "lowercase"),
    ("nginx:", "tag is missing"),
    ("a//b", "path components"),
    ("-a", "path components"),
    ("a-", "path components"),
    ("nginx@sha256:short", "digest"),
    ("nginx@sha256:" + "A" * 64, "lowercase"),
    ("nginx@md5:" + "a" * 32, "unsupported digest algorithm"),
    ("nginx@sha256:" + "a" * 63, "64 hex"),
    ("nginx@", "digest is missing"),
    ("nginx:-tag", "tag must start"),
    ("nginx:" + "a" * 129, "tag must start"),
    (" nginx", "whitespace"),
    ("ngi nx", "whitespace"),
    ("a" * 64, "image id"),
    ("exa_mple.com/app", "not a valid host"),
    ("-bad.com/app", "not a valid host"),
    ("x/" + "a" * 260, "255"),
]


@pytest.mark.parametrize(("text", "expected", "canonical"), VALID)
def test_real_references_parse_and_normalise(text: str, expected: ImageRef, canonical: str | None) -> None:
    """Real references parse into the normalised registry, repository, tag and digest."""
    ref = parse(text)
    assert ref == expected
    if canonical is not None:
        assert str(ref) == canonical
    assert parse(str(ref)) == ref


@pytest.mark.parametrize(("text", "reason_part"), INVALID)
def test_invalid_references_say_why(text: str, reason_part: str) -> None:
    """Invalid forms raise InvalidImageReference whose reason names the rule broken."""
    with pytest.raises(InvalidImageReference) as info:
        parse(text)
    assert reason_part in info.value.reason
    assert info.value.text == text
    assert try_parse(text) is None


def test_reference_and_name_properties() -> None:
    """`reference` prefers the digest, then the tag, then `latest`; `name` is registry/repository."""
    assert parse("nginx").reference == "latest"
    assert parse("nginx:1").reference == "1"
    assert parse(f"nginx:1@{DIGEST}").reference == DIGEST
    assert parse("ghcr.io/o/r:1").name == "ghcr.io/o/r"


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("https://index.docker.io/v1/", DOCKER_HUB),
        ("registry-1.docker.io", DOCKER_HUB),
        ("registry.hub.docker.com", DOCKER_HUB),
        ("HTTP://Quay.io/path", "quay.io"),
        (" ghcr.io ", "ghcr.io"),
        ("localhost:5000", "localhost:5000"),
    ],
)
def test_registry_key_normalises_hosts(host: str, key: str) -> None:
    """Scheme, path, case and Docker Hub aliases are folded into one registry key."""
    assert registry_key(host) == key


_alnum = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_sep = st.sampled_from([".", "_", "__", "-", "--"])
_component = st.builds(lambda a, s, b: a + (s + b if b else ""), _alnum, _sep, st.one_of(st.just(""), _alnum))
_path = st.lists(_component, min_size=1, max_size=4).map("/".join)
_domain = st.one_of(
    st.just("localhost"),
    st.builds(lambda a, b: f"{a}.{b}", _alnum, st.sampled_from(["io", "com", "example.org"])),
    st.builds(lambda a, p: f"{a}.local:{p}", _alnum, st.integers(1, 65535)),
)
_tag = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}\Z")
_digest = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map(lambda h: f"sha256:{h}")


@st.composite
def _references(draw: st.DrawFn) -> str:
    out = draw(_path)
    domain = draw(st.one_of(st.none(), _domain))
    if domain:
        out = f"{domain}/{out}"
    tag = draw(st.one_of(st.none(), _tag))
    if tag:
        out += f":{tag}"
    digest = draw(st.one_of(st.none(), _digest))
    if digest:
        out += f"@{digest}"
    return out


@settings(max_examples=300, deadline=None)
@given(_references())
def test_generated_valid_references_round_trip(text: str) -> None:
    """Every reference the grammar generates parses, and str() parses back to the same value."""
    ref = parse(text)
    assert parse(str(ref)) == ref
    assert str(ref).startswith(ref.registry + "/")


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_raises_only_invalid_reference(text: str) -> None:
    """Arbitrary text either parses or raises InvalidImageReference, nothing else."""
    ref = try_parse(text)
    if ref is None:
        with pytest.raises(InvalidImageReference, match="invalid image reference"):
            parse(text)
    else:
        assert parse(str(ref)) == ref
