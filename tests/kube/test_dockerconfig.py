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
    host_matches,
    parse_secret,
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


@pytest.mark.parametrize(
    "key", ["docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/", "HTTPS://Docker.IO"]
)
def test_docker_hub_aliases_match(key: str) -> None:
    """Every Docker Hub alias in a secret matches an image on docker.io."""
    config = parse_secret(DOCKERCONFIGJSON_TYPE, dockerconfigjson({key: {"auth": auth("u", "p")}}))
    assert config.registries == ("docker.io",)
    assert config.entry_for("docker.io") is not None
    assert config.entry_for("index.docker.io") is not None


@pytest.mark.parametrize(
    ("key", "host", "expected"),
    [
        ("registry.example:5000", "registry.example:5000", True),
        ("registry.example:5000", "registry.example", False),
        ("registry.example", "registry.example:5000", False),
        ("http://registry.example:5000/some/path", "registry.example:5000", True),
        ("ghcr.io", "docker.io", False),
        ("*.example.com", "r.example.com", True),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com:443", "r.example.com", False),
        ("*.example.com", "example.com", False),
    ],
)
def test_host_matching(key: str, host: str, expected: bool) -> None:
    """An auths key matches exactly on host:port, or label by label for `*` globs."""
    assert host_matches(key, host) is expected


def test_exact_entry_preferred_over_glob() -> None:
    """When a glob and an exact key both match, the exact key's credentials are used."""
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
