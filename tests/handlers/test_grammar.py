"""The /imagepull parser: accepted forms, refusals with usage lines, and fuzzing (only ParseError, never echo)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.chatops.grammar import Command, ParseError, Verb, help_text, is_host, is_label, is_subdomain, parse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Command(Verb.HELP)),
        ("help", Command(Verb.HELP)),
        ("status --cluster prod-eu", Command(Verb.STATUS, cluster="prod-eu")),
        ("diagnose shop/web-7d9f-x2x", Command(Verb.DIAGNOSE, "shop", "web-7d9f-x2x")),
        ("diagnose web-7d9f-x2x -n shop", Command(Verb.DIAGNOSE, "shop", "web-7d9f-x2x")),
        ("diagnose pod/web-1 --namespace=shop", Command(Verb.DIAGNOSE, "shop", "web-1")),
        ("diagnose deploy/web -n shop", Command(Verb.DIAGNOSE, "shop", "web", workload_kind="Deployment")),
        ("diagnose shop/deployment/web", Command(Verb.DIAGNOSE, "shop", "web", workload_kind="Deployment")),
        ("DIAGNOSE shop/web --cluster=edge", Command(Verb.DIAGNOSE, "shop", "web", cluster="edge")),
        ("scan", Command(Verb.SCAN)),
        ("scan shop", Command(Verb.SCAN, "shop")),
        ("scan -n shop --cluster edge", Command(Verb.SCAN, "shop", cluster="edge")),
        ("delete-pod shop/web-1", Command(Verb.DELETE_POD, "shop", "web-1")),
        ("delete-pod web-1 -n shop", Command(Verb.DELETE_POD, "shop", "web-1")),
        ("link-secret shop/default regcred", Command(Verb.LINK_SECRET, "shop", "default", secret="regcred")),
        ("recreate-secret shop/regcred", Command(Verb.RECREATE_SECRET, "shop", "regcred")),
        (
            "recreate-secret shop/regcred --from infra/regcred --server Reg.Example.com:5000 --cluster prod",
            Command(
                Verb.RECREATE_SECRET,
                "shop",
                "regcred",
                source_namespace="infra",
                source_name="regcred",
                server="reg.example.com:5000",
                cluster="prod",
            ),
        ),
    ],
)
def test_accepted_forms(text: str, expected: Command) -> None:
    """Every documented form parses to the expected command."""
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("reboot", "unknown command"),
        ("diagnose", "missing argument"),
        ("diagnose web", "which namespace"),
        ("diagnose shop/web extra", "too many arguments"),
        ("diagnose a/b/c", "too many '/'"),
        ("diagnose Shop/web", "invalid namespace"),
        ("diagnose shop/-web", "invalid pod name"),
        ("diagnose shop/web -n other", "namespace is given twice"),
        ("scan shop --cluster", "needs a value"),
        ("scan --cluster UPPER", "invalid cluster"),
        ("scan --cluster a --cluster b", "given twice"),
        ("scan --force", "unknown option"),
        ("status now", "too many arguments"),
        ("recreate-secret shop/x --from infra", "--from takes"),
        ("recreate-secret shop/x --from shop/x", "same secret"),
        ("recreate-secret shop/x --server https://reg.example.com", "without a scheme"),
        ("recreate-secret shop/x --server reg..example", "invalid --server"),
        ("recreate-secret shop/x --server reg.example:99999", "invalid --server"),
        ("link-secret shop/default", "missing argument"),
        ("delete-pod shop/web; rm -rf /", "';' is not allowed"),
        ("delete-pod shop/$(id)", "'$' is not allowed"),
        ("delete-pod shop/`id`", "U+0060"),
        ("diagnose <!channel>", "mentions"),
        ("diagnose <@U123>", "mentions"),
        ("diagnose <http://evil.example|shop/web>", "links"),
        ("diagnose shop/wéb", "U+00E9"),
        ("diagnose shop/web\x00", "U+0000"),
        ("x" * 600, "too long"),
    ],
)
def test_refusals_name_the_problem(text: str, says: str) -> None:
    """A refusal says what was wrong and carries a usage line."""
    with pytest.raises(ParseError) as exc:
        parse(text)
    assert says in exc.value.message
    assert exc.value.usage.startswith("/imagepull")


_HOSTILE = st.sampled_from(
    [";", "|", "&", "$(", "`", "<!channel>", "<!here>", "<@U1>", "<http://x|y>", "'", '"', "\\", "\n", "*", ">"]
)
_ATOMS = st.sampled_from(
    [
        "diagnose",
        "scan",
        "delete-pod",
        "link-secret",
        "recreate-secret",
        "status",
        "help",
        "-n",
        "--cluster",
        "--from",
        "--server",
        "shop",
        "shop/web",
        "deploy/web",
        "infra/regcred",
        "reg.example.com:5000",
        "=",
        "/",
        "prod",
        "x" * 70,
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=120))
def test_fuzz_arbitrary_text_only_raises_parse_error(text: str) -> None:
    """Any text parses or raises ParseError; whatever parses holds only valid Kubernetes names."""
    try:
        cmd = parse(text)
    except ParseError as exc:
        message = exc.message
    else:
        message = ""
    if message:
        assert "<" not in message.replace("'<…>'", "")
        return
    for value in (cmd.namespace, cmd.source_namespace):
        assert value is None or is_label(value)
    for value in (cmd.name, cmd.secret, cmd.source_name):
        assert value is None or is_subdomain(value)
    assert cmd.server is None or is_host(cmd.server)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ATOMS, max_size=7), _HOSTILE, st.integers(min_value=0, max_value=7))
def test_fuzz_grammar_tokens_with_a_hostile_insert_are_refused(atoms: list[str], bad: str, at: int) -> None:
    """Grammar-shaped text with shell or Slack syntax anywhere is always refused, and never echoed."""
    tokens = list(atoms)
    tokens.insert(min(at, len(tokens)), bad)
    text = " ".join(tokens)
    with pytest.raises(ParseError) as exc:
        parse(text)
    for echo in ("<!channel>", "<!here>", "<@U1>", "<http", "$("):
        assert echo not in str(exc.value)


@settings(max_examples=200, deadline=None)
@given(st.lists(_ATOMS, max_size=7))
def test_fuzz_grammar_tokens(atoms: list[str]) -> None:
    """Combinations of real tokens parse or raise ParseError, nothing else."""
    with contextlib.suppress(ParseError):
        assert isinstance(parse(" ".join(atoms)), Command)


def test_help_lists_every_command() -> None:
    """help_text names each typed command and --cluster."""
    text = help_text()
    for verb in ("diagnose", "scan", "recreate-secret", "delete-pod", "link-secret", "status", "help", "--cluster"):
        assert verb in text
