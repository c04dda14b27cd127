"""Render a Helm chart offline with a small subset of Go templates, for machines without Helm.

The subset is what deploy/helm/imagepull-doctor uses: text with ``{{- -}}`` trimming and comments; actions with
pipelines, parentheses, variables (``$``, ``$x :=``, ``range $k, $v :=``); ``if``/``else if``/``else``, ``range``,
``with``, ``define``; and the functions include, toYaml, toJson, nindent, indent, quote, default, required, fail,
printf (%s %d %v), trunc, trimSuffix, contains, eq, ne, gt, ge, lt, le, and, or, not, empty, int. Anything else is
an error, never a silent guess. One known difference: values files are read as PyYAML reads them, so the
YAML 1.1 words y/Y/n/N stay strings here where Go's YAML makes them booleans (quote them).
tests/deploy/test_chart.py checks that its output matches Helm's where Helm is installed (helm-python-sdk).

Usage: ``python deploy/render.py CHART_DIR [-f values.yaml ...] [--name NAME] [--namespace NS]`` prints the
manifests as ``helm template`` does.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class RenderError(Exception):
    """A template that cannot be parsed or evaluated, or a ``required``/``fail`` that fired."""


# ---------------------------------------------------------------------------------------------------------------
# Lexing: text and actions


@dataclass(frozen=True)
class _Action:
    body: str
    where: str


def _split(source: str, where: str) -> list[str | _Action]:
    """Split a template into text pieces and actions, applying ``{{-`` and ``-}}`` trimming."""
    items: list[str | _Action] = []
    pos = 0
    trim_next = False
    while True:
        start = source.find("{{", pos)
        text = source[pos:] if start < 0 else source[pos:start]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if start < 0:
            items.append(text)
            return items
        end = _action_end(source, start + 2, where)
        inner = source[start + 2 : end]
        if inner.startswith("- ") or inner.startswith("-\n") or inner == "-":
            text = text.rstrip(" \t\r\n")
            inner = inner[1:]
        trim_next = inner.endswith(" -") or inner.endswith("\n-")
        if trim_next:
            inner = inner[:-1]
        items.append(text)
        body = inner.strip()
        if not (body.startswith("/*") and body.endswith("*/")):
            items.append(_Action(body, f"{where}:{source.count(chr(10), 0, start) + 1}"))
        pos = end + 2


def _action_end(source: str, pos: int, where: str) -> int:
    """Index of the ``}}`` closing an action, skipping quoted strings and comments."""
    comment = source[pos:].lstrip("- \t\n").startswith("/*")
    if comment:
        close = source.find("*/", pos)
        end = source.find("}}", close)
        if close < 0 or end < 0:
            raise RenderError(f"{where}: unclosed comment")
        return end
    i = pos
    while i < len(source):
        ch = source[i]
        if ch in '"`':
            j = i + 1
            while j < len(source) and source[j] != ch:
                j += 2 if ch == '"' and source[j] == "\\" else 1
            i = j + 1
            continue
        if source.startswith("}}", i):
            return i
        i += 1
    raise RenderError(f"{where}: unclosed action")


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*") | (?P<raw>`[^`]*`)
    | (?P<op>:=|=|\||\(|\)|,)
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
    | (?P<field>(?:\.[A-Za-z0-9_]+)+|\.)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)


def _tokens(body: str, where: str) -> list[tuple[str, str]]:
    """Tokens of one action's body as (kind, text)."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(body):
        if body[pos:].strip() == "":
            break
        m = _TOKEN.match(body, pos)
        if m is None or m.lastgroup is None:
            raise RenderError(f"{where}: cannot read {body[pos:]!r}")
        out.append((m.lastgroup, m.group(m.lastgroup)))
        pos = m.end()
    return out


# ---------------------------------------------------------------------------------------------------------------
# Parsing: pipelines and control structures

Operand = tuple[Any, ...]


@dataclass
class _Pipeline:
    decl: list[str]
    assign: bool  # "=" rather than ":="
    commands: list[list[Operand]]
    where: str


@dataclass
class _Branch:
    kind: str  # "if", "range", "with"
    pipeline: _Pipeline
    body: list[Any]
    otherwise: list[Any] = field(default_factory=list)


class _PipelineParser:
    def __init__(self, tokens: list[tuple[str, str]], where: str) -> None:
        self.tokens = tokens
        self.pos = 0
        self.where = where

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def pipeline(self, *, allow_decl: bool = True) -> _Pipeline:
        decl: list[str] = []
        assign = False
        if allow_decl:
            decl, assign = self._declaration()
        commands: list[list[Operand]] = [self._command()]
        while (tok := self.peek()) is not None and tok == ("op", "|"):
            self.pos += 1
            commands.append(self._command())
        return _Pipeline(decl, assign, commands, self.where)

    def _declaration(self) -> tuple[list[str], bool]:
        first, second = self.peek(), self.peek(1)
        if first and first[0] == "var" and second and second[1] in (":=", "="):
            self.pos += 2
            return [first[1]], second[1] == "="
        third, fourth = self.peek(2), self.peek(3)
        if (
            first
            and first[0] == "var"
            and second == ("op", ",")
            and third
            and third[0] == "var"
            and fourth == ("op", ":=")
        ):
            self.pos += 4
            return [first[1], third[1]], False
        return [], False

    def _command(self) -> list[Operand]:
        operands: list[Operand] = []
        while (tok := self.peek()) is not None and tok not in (("op", "|"), ("op", ")")):
            operands.append(self._operand())
        if not operands:
            raise RenderError(f"{self.where}: empty command")
        return operands

    def _operand(self) -> Operand:
        kind, text = self.tokens[self.pos]
        self.pos += 1
        if kind == "op" and text == "(":
            inner = self.pipeline(allow_decl=False)
            if self.peek() != ("op", ")"):
                raise RenderError(f"{self.where}: missing )")
            self.pos += 1
            return ("pipe", inner)
        if kind == "str":
            return ("lit", json.loads(text))
        if kind == "raw":
            return ("lit", text[1:-1])
        if kind == "num":
            return ("lit", float(text) if "." in text else int(text))
        if kind == "field":
            return ("field", [] if text == "." else text[1:].split("."))
        if kind == "var":
            name, *fields = text.split(".")
            return ("var", name, fields)
        if kind == "ident":
            constants = {"true": True, "false": False, "nil": None}
            if text in constants:
                return ("lit", constants[text])
            return ("func", text)
        raise RenderError(f"{self.where}: unexpected {text!r}")


def _parse(items: list[str | _Action], defines: dict[str, list[Any]]) -> list[Any]:
    """Build the node tree of one template; ``define`` blocks go into ``defines``."""
    stream = iter(items)
    body, closer = _parse_block(stream, defines)
    if closer is not None:
        raise RenderError(f"{closer.where}: unexpected {{{{{closer.body}}}}}")
    return body


def _parse_block(stream: Iterator[str | _Action], defines: dict[str, list[Any]]) -> tuple[list[Any], _Action | None]:
    nodes: list[Any] = []
    for item in stream:
        if isinstance(item, str):
            if item:
                nodes.append(item)
            continue
        word = item.body.split(None, 1)[0] if item.body else ""
        rest = item.body[len(word) :].strip()
        if word in ("end", "else"):
            return nodes, item
        if word in ("if", "range", "with"):
            nodes.append(_parse_branch(word, rest, item.where, stream, defines))
        elif word == "define":
            name = json.loads(rest)
            block, closer = _parse_block(stream, defines)
            if closer is None or closer.body != "end":
                raise RenderError(f"{item.where}: define {name} has no end")
            defines[name] = block
        else:
            tokens = _tokens(item.body, item.where)
            nodes.append(_PipelineParser(tokens, item.where).pipeline())
    return nodes, None


def _parse_branch(
    kind: str, rest: str, where: str, stream: Iterator[str | _Action], defines: dict[str, list[Any]]
) -> _Branch:
    pipeline = _PipelineParser(_tokens(rest, where), where).pipeline()
    body, closer = _parse_block(stream, defines)
    branch = _Branch(kind, pipeline, body)
    if closer is None:
        raise RenderError(f"{where}: {kind} has no end")
    if closer.body.startswith("else"):
        tail = closer.body[4:].strip()
        if tail.startswith("if ") or tail.startswith("with "):
            sub_kind, sub_rest = tail.split(None, 1)
            branch.otherwise = [_parse_branch(sub_kind, sub_rest, closer.where, stream, defines)]
            return branch
        branch.otherwise, closer = _parse_block(stream, defines)
        if closer is None or closer.body != "end":
            raise RenderError(f"{where}: {kind} has no end")
    elif closer.body != "end":
        raise RenderError(f"{closer.where}: unexpected {closer.body}")
    return branch


# ---------------------------------------------------------------------------------------------------------------
# Values as Go prints them


def _truthy(value: Any) -> bool:
    """Go template truth: false, 0, nil and empty strings, lists and maps are false."""
    if value is None or value is False:
        return False
    if isinstance(value, int | float | str | list | dict | tuple):
        return bool(value)
    return True


def _go_number(value: float) -> str:
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def _to_str(value: Any) -> str:
    """What ``{{ value }}`` prints."""
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_number(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_to_str(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_to_str(v) for v in value) + "]"
    return str(value)


def _plain(value: Any) -> Any:
    """Values with integral floats made ints, as Go's encoders print float64."""
    if isinstance(value, float) and value == int(value):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _to_json(value: Any) -> str:
    text = json.dumps(_plain(value), separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


class _GoStyleDumper(yaml.SafeDumper):
    """A YAML dumper that quotes strings with double quotes, as Go's YAML encoder does."""

    def choose_scalar_style(self) -> str:
        style = str(super().choose_scalar_style())
        return '"' if style == "'" else style


def _to_yaml(value: Any) -> str:
    if value is None:
        return "null"
    text = yaml.dump(
        _plain(value),
        Dumper=_GoStyleDumper,
        default_flow_style=False,
        sort_keys=True,
        width=1 << 20,
        allow_unicode=True,
    )
    text = text.removesuffix("\n")
    return text.removesuffix("\n...")


def _indent(width: int, text: str) -> str:
    pad = " " * width
    return pad + text.replace("\n", "\n" + pad)


def _printf(fmt: str, *args: Any) -> str:
    values = iter(args)

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "%%":
            return "%"
        return _to_str(next(values))

    return re.sub(r"%[sdv%]", one, fmt)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RenderError(f"not a number: {value!r}")
    return float(value)


def _to_int(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return int(float(value)) if value.strip() else 0
    return int(value)


def _quote(*args: Any) -> str:
    return " ".join(json.dumps(_to_str(a), ensure_ascii=False) for a in args if a is not None)


def _required(message: str, value: Any) -> Any:
    if value is None or value == "":
        raise RenderError(message)
    return value


def _fail(message: str) -> str:
    raise RenderError(message)


def _and(*args: Any) -> Any:
    for a in args:
        if not _truthy(a):
            return a
    return args[-1]


def _or(*args: Any) -> Any:
    for a in args:
        if _truthy(a):
            return a
    return args[-1]


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "toYaml": _to_yaml,
    "toJson": _to_json,
    "nindent": lambda n, s: "\n" + _indent(int(n), _to_str(s)),
    "indent": lambda n, s: _indent(int(n), _to_str(s)),
    "quote": _quote,
    "default": lambda d, *v: v[0] if v and _truthy(v[0]) else d,
    "required": _required,
    "fail": _fail,
    "printf": _printf,
    "trunc": lambda n, s: _to_str(s)[: int(n)] if n >= 0 else _to_str(s)[int(n) :],
    "trimSuffix": lambda suffix, s: _to_str(s).removesuffix(suffix),
    "contains": lambda sub, s: sub in _to_str(s),
    "eq": lambda a, *bs: any(a == b for b in bs),
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: _number(a) > _number(b),
    "ge": lambda a, b: _number(a) >= _number(b),
    "lt": lambda a, b: _number(a) < _number(b),
    "le": lambda a, b: _number(a) <= _number(b),
    "and": _and,
    "or": _or,
    "not": lambda a: not _truthy(a),
    "empty": lambda a: not _truthy(a),
    "int": _to_int,
}


# ---------------------------------------------------------------------------------------------------------------
# Evaluation


class _Renderer:
    def __init__(self, defines: dict[str, list[Any]]) -> None:
        self.defines = defines

    def run(self, nodes: list[Any], dot: Any, scopes: list[dict[str, Any]]) -> str:
        out: list[str] = []
        scopes = [*scopes, {}]
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
            elif isinstance(node, _Pipeline):
                value = self.pipeline(node, dot, scopes)
                if not node.decl:
                    out.append(_to_str(value))
            else:
                out.append(self.branch(node, dot, scopes))
        return "".join(out)

    def branch(self, node: _Branch, dot: Any, scopes: list[dict[str, Any]]) -> str:
        inner: list[dict[str, Any]] = [*scopes, {}]
        value = self.pipeline(node.pipeline, dot, inner, declare=node.kind != "range")
        if node.kind == "range":
            return self.range(node, value, dot, inner)
        if not _truthy(value):
            return self.run(node.otherwise, dot, scopes)
        return self.run(node.body, value if node.kind == "with" else dot, inner)

    def range(self, node: _Branch, value: Any, dot: Any, scopes: list[dict[str, Any]]) -> str:
        if not _truthy(value):
            return self.run(node.otherwise, dot, scopes)
        pairs = sorted(value.items()) if isinstance(value, dict) else list(enumerate(value))
        out: list[str] = []
        for key, item in pairs:
            frame = dict(scopes[-1])
            if len(node.pipeline.decl) == 1:
                frame[node.pipeline.decl[0]] = item
            elif len(node.pipeline.decl) == 2:
                frame[node.pipeline.decl[0]] = key
                frame[node.pipeline.decl[1]] = item
            out.append(self.run(node.body, item, [*scopes[:-1], frame]))
        return "".join(out)

    def pipeline(self, pipe: _Pipeline, dot: Any, scopes: list[dict[str, Any]], *, declare: bool = True) -> Any:
        value: Any = None
        piped = False
        for command in pipe.commands:
            value = self.command(command, dot, scopes, value if piped else _NOTHING, pipe.where)
            piped = True
        if declare and pipe.decl:
            if pipe.assign:
                for frame in reversed(scopes):
                    if pipe.decl[0] in frame:
                        frame[pipe.decl[0]] = value
                        break
                else:
                    raise RenderError(f"{pipe.where}: undefined variable {pipe.decl[0]}")
            else:
                scopes[-1][pipe.decl[0]] = value
        return value

    def command(self, operands: list[Operand], dot: Any, scopes: list[dict[str, Any]], piped: Any, where: str) -> Any:
        head = operands[0]
        if head[0] == "func":
            name = head[1]
            args = [self.operand(o, dot, scopes, where) for o in operands[1:]]
            if piped is not _NOTHING:
                args.append(piped)
            if name == "include":
                return self.include(args, scopes, where)
            if name not in _FUNCTIONS:
                raise RenderError(f"{where}: function {name!r} is not in this renderer's subset")
            try:
                return _FUNCTIONS[name](*args)
            except RenderError as exc:
                raise RenderError(f"{where}: {exc}") from None
            except (TypeError, ValueError) as exc:
                raise RenderError(f"{where}: {name}: {exc}") from None
        if len(operands) > 1 or piped is not _NOTHING:
            raise RenderError(f"{where}: {head} is not a function")
        return self.operand(head, dot, scopes, where)

    def include(self, args: list[Any], scopes: list[dict[str, Any]], where: str) -> str:
        if len(args) != 2 or args[0] not in self.defines:
            raise RenderError(f"{where}: include of unknown template {args[:1]}")
        return self.run(self.defines[args[0]], args[1], [{"$": args[1]}])

    def operand(self, operand: Operand, dot: Any, scopes: list[dict[str, Any]], where: str) -> Any:
        kind = operand[0]
        if kind == "lit":
            return operand[1]
        if kind == "pipe":
            return self.pipeline(operand[1], dot, scopes, declare=False)
        if kind == "field":
            return _fields(dot, operand[1], where)
        if kind == "var":
            for frame in reversed(scopes):
                if operand[1] in frame:
                    return _fields(frame[operand[1]], operand[2], where)
            raise RenderError(f"{where}: undefined variable {operand[1]}")
        raise RenderError(f"{where}: {operand[1]} is a function, not a value")


_NOTHING = object()


def _fields(value: Any, names: list[str], where: str) -> Any:
    for name in names:
        if not isinstance(value, Mapping):
            raise RenderError(f"{where}: nil pointer evaluating .{name}")
        value = value.get(name)
    return value


# ---------------------------------------------------------------------------------------------------------------
# Charts


def merge_values(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's coalescing: maps merge key by key, other values replace, a null override deletes the key."""
    merged = dict(defaults)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = value
    return merged


def render_chart(
    chart_dir: Path,
    values: Mapping[str, Any] | None = None,
    *,
    name: str = "release-name",
    namespace: str = "default",
    is_install: bool = True,
) -> dict[str, str]:
    """Render every template of the chart: ``{"<chart>/templates/<file>": text}``, as Helm's engine returns."""
    chart_meta = yaml.safe_load((chart_dir / "Chart.yaml").read_text(encoding="utf-8"))
    defaults = yaml.safe_load((chart_dir / "values.yaml").read_text(encoding="utf-8")) or {}
    chart = {
        "Name": chart_meta["name"],
        "Version": chart_meta["version"],
        "AppVersion": chart_meta.get("appVersion", ""),
        "Description": chart_meta.get("description", ""),
    }
    release = {
        "Name": name,
        "Namespace": namespace,
        "Service": "Helm",
        "IsInstall": is_install,
        "IsUpgrade": not is_install,
        "Revision": 1,
    }
    root = {"Values": merge_values(defaults, values or {}), "Chart": chart, "Release": release}
    defines: dict[str, list[Any]] = {}
    trees: dict[str, list[Any]] = {}
    for path in sorted((chart_dir / "templates").iterdir()):
        if not path.is_file() or path.suffix not in (".yaml", ".yml", ".tpl", ".txt"):
            continue
        key = f"{chart['Name']}/templates/{path.name}"
        tree = _parse(_split(path.read_text(encoding="utf-8"), key), defines)
        if not path.name.startswith("_"):
            trees[key] = tree
    renderer = _Renderer(defines)
    return {key: renderer.run(tree, root, [{"$": root}]) for key, tree in trees.items()}


def manifests(rendered: Mapping[str, str]) -> list[dict[str, Any]]:
    """The Kubernetes objects of a rendered chart (NOTES.txt and empty documents left out)."""
    objects: list[dict[str, Any]] = []
    for key in sorted(rendered):
        if key.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(rendered[key]) if doc)
    return objects


def main(argv: list[str] | None = None) -> int:
    """Print the chart's manifests, like ``helm template``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("chart", type=Path)
    parser.add_argument("-f", "--values", type=Path, action="append", default=[])
    parser.add_argument("--name", default="release-name")
    parser.add_argument("--namespace", default="default")
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    for path in args.values:
        values = merge_values(values, yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    try:
        rendered = render_chart(args.chart, values, name=args.name, namespace=args.namespace)
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for key in sorted(rendered):
        if key.endswith("NOTES.txt") or not rendered[key].strip():
            continue
        print(f"---\n# Source: {key}\n{rendered[key].strip(chr(10))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
