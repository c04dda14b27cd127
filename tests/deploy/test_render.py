"""deploy/render.py: the Go-template subset, on small templates with known Helm output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy.render import RenderError, main, merge_values, render_chart


def render_one(tmp_path: Path, template: str, values: dict[str, Any] | None = None) -> str:
    """Render one template in a throwaway chart."""
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "Chart.yaml").write_text("apiVersion: v2\nname: demo\nversion: 1.2.3\nappVersion: '9.9'\n")
    (tmp_path / "values.yaml").write_text("greeting: hello\nport: 8080\nitems: [a, b]\nmap: {b: 2, a: 1}\n")
    (tmp_path / "templates" / "_helpers.tpl").write_text('{{- define "demo.name" -}}{{ .Chart.Name }}-x{{- end -}}')
    (tmp_path / "templates" / "t.yaml").write_text(template)
    return render_chart(tmp_path, values, name="rel", namespace="ns")["demo/templates/t.yaml"]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("a\n  {{- .Values.greeting }}\n", "ahello\n"),
        ("{{ .Values.greeting -}}\n\n  b", "hellob"),
        ("{{/* a comment */}}x{{- /* another */ -}} y", "xy"),
        ("{{ .Values.port }} {{ .Values.port | quote }} {{ .Values.missing | default 7 }}", '8080 "8080" 7'),
        ("{{ range .Values.items }}[{{ . }}]{{ end }}", "[a][b]"),
        ("{{ range $k, $v := .Values.map }}{{ $k }}={{ $v }};{{ end }}", "a=1;b=2;"),
        ("{{ range .Values.none }}x{{ else }}empty{{ end }}", "empty"),
        ('{{ if eq .Values.greeting "hi" }}1{{ else if .Values.port }}2{{ else }}3{{ end }}', "2"),
        ("{{ with .Values.greeting }}{{ . }} {{ $.Release.Name }}{{ end }}", "hello rel"),
        ('{{ $n := include "demo.name" . }}{{ $n = printf "%s!" $n }}{{ $n }}', "demo-x!"),
        ('{{ include "demo.name" . | nindent 2 }}', "\n  demo-x"),
        ("{{ toYaml .Values.map | indent 2 }}", "  a: 1\n  b: 2"),
        ('{{ toJson .Values.items }} {{ toJson "<&>" }}', '["a","b"] "\\u003c\\u0026\\u003e"'),
        ('{{ printf "%s-%d" .Release.Name 3 | trunc 5 | trimSuffix "-" }}', "rel-3"),
        ('{{ and 1 0 }} {{ or 0 "" 5 }} {{ not .Values.items }} {{ gt (int .Values.port) 80 }}', "0 5 false true"),
        ("{{ .Chart.AppVersion }} {{ .Release.Namespace }} {{ .Release.Service }}", "9.9 ns Helm"),
    ],
)
def test_subset_renders_like_helm(tmp_path: Path, template: str, expected: str) -> None:
    """Each construct prints what Helm v4.2.3 prints for it (expected outputs taken from helm-python-sdk)."""
    assert render_one(tmp_path, template) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ('{{ required "name please" .Values.missing }}', "name please"),
        ('{{ fail "stop here" }}', "stop here"),
        ("{{ .Values.missing.deeper }}", "nil pointer evaluating .deeper"),
        ("{{ if .Values.port }}x", "if has no end"),
        ("{{ $undefined }}", "undefined variable"),
        ('{{ lookup "v1" "Secret" "ns" "name" }}', "not in this renderer's subset"),
    ],
)
def test_errors_are_reported_not_guessed(tmp_path: Path, template: str, message: str) -> None:
    """Missing values, unknown functions and broken templates raise RenderError with the reason."""
    with pytest.raises(RenderError, match=message):
        render_one(tmp_path, template)


def test_merge_values_coalesces_like_helm() -> None:
    """Maps merge key by key, lists and scalars replace, null deletes."""
    merged = merge_values({"a": {"b": 1, "c": 2}, "l": [1, 2], "d": 1}, {"a": {"c": 3}, "l": [9], "d": None})
    assert merged == {"a": {"b": 1, "c": 3}, "l": [9]}


def test_cli_prints_manifests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python deploy/render.py CHART -f values.yaml` prints each template under a Source comment."""
    render_one(tmp_path, "kind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-{{ .Values.greeting }}\n")
    values = tmp_path / "override.yaml"
    values.write_text("greeting: bonjour\n")
    assert main([str(tmp_path), "-f", str(values), "--name", "r1"]) == 0
    assert (
        capsys.readouterr().out
        == "---\n# Source: demo/templates/t.yaml\nkind: ConfigMap\nmetadata:\n  name: r1-bonjour\n"
    )
    (tmp_path / "templates" / "t.yaml").write_text('{{ required "greeting2 is required" .Values.greeting2 }}')
    assert main([str(tmp_path)]) == 1
    assert "greeting2 is required" in capsys.readouterr().err
