"""Pull-secret parsing: kubelet-compatible reading, registry matching, problems that never echo secrets."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.kube.dockerconfig import (
    DOCKERCFG_TYPE,
    DOCKERCONFIGJSON_TYPE,
    build_dockerconfigjson,
    credentials_for,
    fingerprint,
    is_default_registry_match,
    keyring_key,
    lookup,
    parse_secret,
    urls_match,
)


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def dockerconfigjson(auths: Any) -> dict[str, str]:
    return {".dockerconfigjson": b64(json.dumps({"auths": auths}))}


def auth(user: str, password: str) -> str:
    return b64(f"{user}:{password}")


def test_dockerconfigjson_with_auth_field() -> None:
    """A standard secret parses; its key is normalised and its credentials come from `auth`."""
    config = parse_secret(DOCKERCONFIGJSON_TYPE, dockerconfigjson({"https://ghcr.io/v2/": {"auth": auth("u", "p:w")}}))
    assert config.parses and config.problem is None
    assert config.registries == ("ghcr.io",)
    creds = credentials_for(config, "ghcr.io")
    assert creds is not None
    assert (creds.username, creds.password) == ("u", "p:w")
    assert creds.fingerprint == fingerprint("ghcr.io", "u", "p:w")
    assert len(creds.fingerprint) == 12


def test_auth_wins_over_username_password() -> None:
    """Like the kubelet, a decoded `auth` replaces `username`/`password` in the same entry."""
    config = parse_secret(
        DOCKERCONFIGJSON_TYPE,
        dockerconfigjson({"r.example:5000": {"username": "old", "password": "old", "auth": auth("new", "pw")}}),
    )
    creds = credentials_for(config, "r.example:5000")
    assert creds is not None and creds.username == "new" and creds.password == "pw"


def test_username_password_without_auth() -> None:
    """An entry with only username and password is usable."""
    config = parse_secret(DOCKERCONFIGJSON_TYPE, dockerconfigjson({"quay.io": {"username": "a", "password": "b"}}))
    creds = credentials_for(config, "quay.io")
    assert creds is not None and (creds.username, creds.password) == ("a", "b")


def test_identity_token_only_parses_without_basic_credentials() -> None:
    """An identity token alone is a valid entry but gives no Basic credentials to the probe."""
    config = parse_secret(DOCKERCONFIGJSON_TYPE, dockerconfigjson({"myreg.azurecr.io": {"identitytoken": "tok"}}))
    assert config.parses
    assert config.registries == ("myreg.azurecr.io",)
    assert credentials_for(config, "myreg.azurecr.io") is None


def test_legacy_dockercfg() -> None:
    """A kubernetes.io/dockercfg secret holds the auths map at the top level."""
    data = {".dockercfg": b64(json.dumps({"https://index.docker.io/v1/": {"auth": auth("hub", "pw")}}))}
    config = parse_secret(DOCKERCFG_TYPE, data)
    assert config.parses
    assert config.registries == ("docker.io",)
    assert credentials_for(config, "docker.io") is not None


# Docker Hub: only `docker.io`, `index.docker.io` and `https://index.docker.io/v1/` reach Hub images in the kubelet.
@pytest.mark.parametrize(
    ("key", "applies"),
    [
        ("docker.io", True),
        ("index.docker.io", True),
        ("https://index.docker.io/v1/", True),
        ("index.docker.io/v1/", True),
        ("registry-1.docker.io", False),
        ("registry.hub.docker.com", False),
        ("HTTPS://Docker.IO", False),
    ],
)
def test_docker_hub_keys(key: str, applies: bool) -> None:
    """Which Docker Hub spellings of an auths key the kubelet sends for `docker.io/library/nginx`."""
    config = parse_secret(DOCKERCONFIGJSON_TYPE, dockerconfigjson({key: {"auth": auth("u", "p")}}))
    assert (config.entry_for("docker.io/library/nginx") is not None) is applies
    assert (config.entry_for("docker.io/team/app") is not None) is applies


# kubernetes/kubernetes pkg/credentialprovider/keyring_test.go, TestURLsMatch (glob, target, match).
KUBELET_URLS_MATCH = [
    ("*.kubernetes.io", "prefix.kubernetes.io", True),
    ("prefix.*.io", "prefix.kubernetes.io", True),
    ("prefix.kubernetes.*", "prefix.kubernetes.io", True),
    ("*-good.kubernetes.io", "prefix-good.kubernetes.io", True),
    ("*.kubernetes.io/blah", "prefix.kubernetes.io/blah", True),
    ("prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", True),
    ("*.kubernetes.io:1111/blah", "prefix.kubernetes.io:1111/blah", True),
    ("prefix.*.io:1111/foo", "prefix.kubernetes.io:1111/foo/bar", True),
    ("*.kubernetes.io", "kubernetes.io", False),
    ("*.*.kubernetes.io", "prefix.kubernetes.io", False),
    ("*.*.kubernetes.io", "kubernetes.io", False),
    ("kubernetes.io", "kubernetes.com", False),
    ("k*.io", "quay.io", False),
    ("*.kubernetes.io:1234/blah", "prefix.kubernetes.io:1111/blah", False),
    ("prefix.*.io/foo", "prefix.kubernetes.io:1111/foo/bar", False),
]


@pytest.mark.parametrize(("glob", "target", "expected"), KUBELET_URLS_MATCH)
def test_kubelet_urls_match(glob: str, target: str, expected: bool) -> None:
    """kubelet's own URLsMatch cases."""
    assert urls_match(glob, target) is expected


# keyring_test.go TestDockerKeyringForGlob: (auths key, image host[/path]); the lookup is of target + "/foo/bar".
KUBELET_KEYRING_HITS = [
    ("https://hello.kubernetes.io", "hello.kubernetes.io"),
    ("https://*.docker.io", "prefix.docker.io"),
    ("https://prefix.*.io", "prefix.docker.io"),
    ("https://prefix.docker.*", "prefix.docker.io"),
    ("https://*.docker.io/path", "prefix.docker.io/path"),
    ("https://prefix.*.io/path", "prefix.docker.io/path/subpath"),
    ("https://prefix.docker.*/path", "prefix.docker.io/path"),
    ("https://*.docker.io:8888", "prefix.docker.io:8888"),
    ("https://prefix.*.io:8888", "prefix.docker.io:8888"),
    ("https://prefix.docker.*:8888", "prefix.docker.io:8888"),
    ("https://*.docker.io/path:1111", "prefix.docker.io/path:1111"),
    ("https://*.docker.io/v1/", "prefix.docker.io/path:1111"),
    ("https://*.docker.io/v2/", "prefix.docker.io/path:1111"),
    ("https://prefix.docker.*/path:1111", "prefix.docker.io/path:1111"),
    ("prefix.docker.io:1111", "prefix.docker.io:1111/path"),
    ("*.docker.io:1111", "prefix.docker.io:1111/path"),
]
# keyring_test.go TestKeyringMiss (auths key, lookup; the lookup is of lookup + "/foo/bar").
KUBELET_KEYRING_MISSES = [
    ("https://hello.kubernetes.io", "world.mesos.org/foo/bar"),
    ("https://*.docker.com", "prefix.docker.io"),
    ("https://suffix.*.io", "prefix.docker.io"),
    ("https://prefix.docker.c*", "prefix.docker.io"),
    ("https://prefix.*.io/path:1111", "prefix.docker.io/path/subpath:1111"),
    ("suffix.*.io", "prefix.docker.io"),
]


@pytest.mark.parametrize(("key", "target"), KUBELET_KEYRING_HITS)
def test_kubelet_keyring_for_glob(key: str, target: str) -> None:
    """kubelet's TestDockerKeyringForGlob: the entry is found for `target/foo/bar`."""
    config = parse_secret(DOCKERCONFIGJSON_TYPE, dockerconfigjson({key: {"auth": auth("foo", "bar")}}))
    creds = credentials_for(config, target + "/foo/bar")
    assert creds is not None and (creds.username, creds.password) == ("foo", "bar")


@pytest.mark.parametrize(("key", "target"), KUBELET_KEYRING_MISSES)
def test_kubelet_keyring_miss(key: str, target: str) -> None:
    """kubelet's TestKeyringMiss: no entry for `target/foo/bar`."""
    config = parse_secret(DOCKERCONFIGJSON_TYPE, dockerconfigjson({key: {"auth": auth("foo", "bar")}}))
    assert credentials_for(config, target + "/foo/bar") is None


@pytest.mark.parametrize(
    ("image", "found"),
    [
        ("world.mesos.org/foo/bar", False),  # TestKeyringMissWithDockerHubCredentials
        ("google/docker-registry", True),  # TestKeyringHitWithUnqualifiedDockerHub
        ("jenkins", True),  # TestKeyringHitWithUnqualifiedLibraryDockerHub
        ("index.docker.io/google/docker-registry", True),  # TestKeyringHitWithQualifiedDockerHub
        ("docker.io/library/nginx", True),  # what the kubelet looks up for `nginx` (ParseImageName normalises)
    ],
)
def test_kubelet_keyring_docker_hub_credentials(image: str, found: bool) -> None:
    """kubelet's Docker Hub keyring tests, with the key `https://index.docker.io/v1/`."""
    config = parse_secret(
        DOCKERCONFIGJSON_TYPE, dockerconfigjson({"https://index.docker.io/v1/": {"auth": auth("foo", "bar")}})
    )
    assert (credentials_for(config, image) is not None) is found


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        # keyring_test.go TestIsDefaultRegistryMatch
        ("foo/bar", True),
        ("docker.io/foo/bar", True),
        ("index.docker.io/foo/bar", True),
        ("foo", True),
        ("", False),
        ("registry.tld/foo/bar", False),
        ("registry:5000/foo/bar", False),
        ("myhostdocker.io/foo/bar", False),
    ],
)
def test_kubelet_is_default_registry_match(image: str, expected: bool) -> None:
    """kubelet's TestIsDefaultRegistryMatch."""
    assert is_default_registry_match(image) is expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("https://index.docker.io/v1/", "index.docker.io"),
        ("http://r.example:5000/v2/", "r.example:5000"),
        ("r.example.com/v2/team", "r.example.com/team"),
        ("r.example.com/team/", "r.example.com/team/"),
        ("r.example.com:notaport", None),
    ],
)
def test_keyring_key(key: str, expected: str | None) -> None:
    """BasicDockerKeyring.Add: scheme dropped, `/v1/` and `/v2/` dropped, `/` alone dropped, bad URLs ignored."""
    assert keyring_key(key) == expected


@pytest.mark.parametrize(
    ("key", "image", "expected"),
    [
        ("registry.example:5000", "registry.example:5000/app", True),
        ("registry.example:5000", "registry.example/app", False),
        ("registry.example", "registry.example:5000/app", False),
        ("http://registry.example:5000/team", "registry.example:5000/team/app", True),
        ("http://registry.example:5000/team", "registry.example:5000/other/app", False),
        ("registry.example:5000/team", "registry.example:5000/teamx/app", True),  # a plain string prefix
        ("ghcr.io", "docker.io/library/nginx", False),
        ("*.example.com", "r.example.com/app", True),
        ("*.example.com", "a.b.example.com/app", False),
        ("*.example.com:443", "r.example.com/app", False),
        ("*.example.com", "example.com/app", False),
    ],
)
def test_image_matching(key: str, image: str, expected: bool) -> None:
    """Port, label count, per-label glob and path prefix all have to agree."""
    config = parse_secret(DOCKERCONFIGJSON_TYPE, dockerconfigjson({key: {"auth": auth("u", "p")}}))
    assert (config.entry_for(image) is not None) is expected


def test_lookup_orders_most_specific_first_across_secrets() -> None:
    """Keys of all the pod's secrets are tried in reverse lexical order: `host/team` before `host`."""
    broad = parse_secret(DOCKERCONFIGJSON_TYPE, dockerconfigjson({"r.example.com": {"auth": auth("broad", "p")}}))
    team = parse_secret(DOCKERCONFIGJSON_TYPE, dockerconfigjson({"r.example.com/team": {"auth": auth("team", "p")}}))
    found = lookup((("a", broad), ("b", team)), "r.example.com/team/app")
    assert [(src, e.username) for src, e in found] == [("b", "team"), ("a", "broad")]
    assert [src for src, _ in lookup((("a", broad), ("b", team)), "r.example.com/other/app")] == ["a"]


def test_exact_entry_preferred_over_glob() -> None:
    """A glob and an exact key both match: reverse lexical order puts `r.example.com` before `*.example.com`."""
    config = parse_secret(
        DOCKERCONFIGJSON_TYPE,
        dockerconfigjson({"*.example.com": {"auth": auth("glob", "p")}, "r.example.com": {"auth": auth("exact", "p")}}),
    )
    creds = credentials_for(config, "r.example.com")
    assert creds is not None and creds.username == "exact"


SECRET_PW = "Sup3rS3cretValue!"


@pytest.mark.parametrize(
    ("secret_type", "data", "fragment"),
    [
        ("Opaque", dockerconfigjson({"ghcr.io": {"auth": auth("u", SECRET_PW)}}), "type is Opaque"),
        (DOCKERCONFIGJSON_TYPE, {}, "no .dockerconfigjson key"),
        (DOCKERCONFIGJSON_TYPE, {".dockerconfigjson": "!!not base64 " + SECRET_PW}, "not valid base64"),
        (DOCKERCONFIGJSON_TYPE, {".dockerconfigjson": b64("{" + SECRET_PW)}, "not valid JSON"),
        (DOCKERCONFIGJSON_TYPE, {".dockerconfigjson": b64(json.dumps([SECRET_PW]))}, "not a JSON object"),
        (DOCKERCONFIGJSON_TYPE, {".dockerconfigjson": b64(json.dumps({"x": SECRET_PW}))}, "no auths field"),
        (DOCKERCONFIGJSON_TYPE, dockerconfigjson({}), "empty"),
        (DOCKERCONFIGJSON_TYPE, dockerconfigjson({"ghcr.io": {"auth": b64(SECRET_PW)}}), "without a ':'"),
        (DOCKERCONFIGJSON_TYPE, dockerconfigjson({"ghcr.io": {"auth": "%%" + SECRET_PW}}), "not valid base64"),
        (DOCKERCONFIGJSON_TYPE, dockerconfigjson({"ghcr.io": {"password": SECRET_PW}}), "no credentials"),
        (DOCKERCONFIGJSON_TYPE, dockerconfigjson({"ghcr.io": SECRET_PW}), "not a JSON object"),
        (DOCKERCONFIGJSON_TYPE, dockerconfigjson({"ghcr.io": {"username": 5, "password": SECRET_PW}}), "not a string"),
        (
            DOCKERCFG_TYPE,
            {".dockercfg": b64(json.dumps({"auths": {"ghcr.io": {"auth": auth("u", SECRET_PW)}}}))},
            "wrong type",
        ),
        (None, None, "type is unknown"),
    ],
)
def test_problems_are_clear_and_do_not_echo_secrets(
    secret_type: str | None, data: dict[str, str] | None, fragment: str
) -> None:
    """Each malformed secret gets a problem naming what is wrong, without any of its content."""
    config = parse_secret(secret_type, data)
    assert not config.parses
    assert config.problem is not None and fragment in config.problem
    assert SECRET_PW not in config.problem
    assert "Sup3r" not in config.problem


def test_problem_names_the_registry_of_the_bad_entry() -> None:
    """The problem says which registry's entry is broken (a host is not a secret)."""
    config = parse_secret(DOCKERCONFIGJSON_TYPE, dockerconfigjson({"ghcr.io": {"auth": b64("nocolon")}}))
    assert config.problem is not None and "ghcr.io" in config.problem


def test_build_round_trips() -> None:
    """A secret built for a server parses back with a complete entry matching that server."""
    for server, host in (
        ("docker.io", "docker.io"),
        ("https://ghcr.io", "ghcr.io"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
    ):
        data = build_dockerconfigjson(server, "user", "p@ss:word")
        config = parse_secret(DOCKERCONFIGJSON_TYPE, data)
        creds = credentials_for(config, host)
        assert creds is not None and creds.password == "p@ss:word"
        doc = json.loads(base64.b64decode(data[".dockerconfigjson"]))
        (entry,) = doc["auths"].values()
        assert base64.b64decode(entry["auth"]).decode() == "user:p@ss:word"


def test_repr_never_shows_passwords() -> None:
    """Entries and credentials print without their secret values."""
    config = parse_secret(DOCKERCONFIGJSON_TYPE, dockerconfigjson({"ghcr.io": {"auth": auth("who", SECRET_PW)}}))
    creds = credentials_for(config, "ghcr.io")
    assert SECRET_PW not in repr(config) and SECRET_PW not in repr(creds)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)

MARK = "ZqXw9Marker7Kp"


@settings(max_examples=300, deadline=None)
@given(
    secret_type=st.sampled_from([DOCKERCONFIGJSON_TYPE, DOCKERCFG_TYPE, "Opaque", None]),
    payload=st.one_of(
        st.binary(max_size=200),
        _json_values.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(st.text(max_size=12), _json_values, max_size=3).map(
            lambda d: json.dumps({"auths": d}).encode()
        ),
    ),
    encode=st.booleans(),
)
def test_never_raises_on_garbage(secret_type: str | None, payload: bytes, encode: bool) -> None:
    """Any bytes, encoded or not, give a DockerConfig and never an exception."""
    value = b64(payload) if encode else payload.decode("latin-1")
    key = ".dockercfg" if secret_type == DOCKERCFG_TYPE else ".dockerconfigjson"
    config = parse_secret(secret_type, {key: value})
    assert config.parses == (config.problem is None)


@settings(max_examples=300, deadline=None)
@given(
    user=st.text(min_size=0, max_size=10),
    password=st.text(min_size=0, max_size=10),
    shape=st.sampled_from(["auth_no_colon", "auth_bad_b64", "bad_json", "types", "only_password", "not_object"]),
    legacy=st.booleans(),
)
def test_problem_never_echoes_input(user: str, password: str, shape: str, legacy: bool) -> None:
    """Whatever is malformed, the problem text never contains the secret's values."""
    secret_user, secret_pw = MARK + "u" + user, MARK + "p" + password
    entry: Any
    if shape == "auth_no_colon":
        entry = {"auth": b64((secret_user + secret_pw).replace(":", "")), "username": secret_user}
    elif shape == "auth_bad_b64":
        entry = {"auth": "*" + secret_pw, "password": secret_pw}
    elif shape == "types":
        entry = {"username": [secret_user], "password": secret_pw}
    elif shape == "only_password":
        entry = {"password": secret_pw}
    elif shape == "not_object":
        entry = [secret_user, secret_pw]
    else:
        entry = None
    if entry is None:
        raw = ('{"auths": {"ghcr.io": {"auth": "' + secret_pw).encode("utf-8", "surrogatepass")
    else:
        doc = {"ghcr.io": entry} if legacy else {"auths": {"ghcr.io": entry}}
        raw = json.dumps(doc).encode()
    secret_type = DOCKERCFG_TYPE if legacy else DOCKERCONFIGJSON_TYPE
    key = ".dockercfg" if legacy else ".dockerconfigjson"
    config = parse_secret(secret_type, {key: b64(raw)})
    assert config.problem is not None
    assert MARK not in config.problem
