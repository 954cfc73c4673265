"""Grafana's expansion of provisioning values (pkg/services/provisioning/values/values.go): each string value is split
on `$$` (a literal `$`), each part has `$__env{NAME}` / `$__file{PATH}` expanded (setting.ExpandVar), then Go's
os.ExpandEnv: `$NAME` and `${NAME}` become the variable's value, "" when unset. There is no default syntax:
`${NAME:-default}` looks up a variable literally named `NAME:-default`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_SPECIAL = set("*#$@!?-0123456789")


def _shell_name(s: str) -> tuple[str, int]:
    """Go's os.getShellName: the name after a `$` and how many bytes it took."""
    if s[0] == "{":
        if len(s) > 2 and s[1] in _SPECIAL and s[2] == "}":
            return s[1:2], 3
        for i in range(1, len(s)):
            if s[i] == "}":
                if i == 1:
                    return "", 2  # bad syntax: eat "${}"
                return s[1:i], i + 1
        return "", 1  # bad syntax: eat "${"
    if s[0] in _SPECIAL:
        return s[0:1], 1
    i = 0
    while i < len(s) and (s[i] == "_" or (s[i].isascii() and s[i].isalnum())):
        i += 1
    return s[:i], i


def expand_env(s: str, env: Mapping[str, str]) -> str:
    """Go's os.ExpandEnv(s) with `env` as the environment."""
    out, i, j = [], 0, 0
    while j < len(s):
        if s[j] == "$" and j + 1 < len(s):
            out.append(s[i:j])
            name, width = _shell_name(s[j + 1 :])
            if name == "" and width > 0:
                pass  # invalid syntax: eaten
            elif name == "":
                out.append("$")
            else:
                out.append(env.get(name, ""))
            j += width
            i = j + 1
        j += 1
    return "".join(out) + s[i:]


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """values.go's interpolateValue."""
    parts = []
    for part in value.split("$$"):
        part = re.sub(r"\$__env\{(.*?)\}", lambda m: env.get(m.group(1), ""), part)
        part = re.sub(r"\$__file\{(.*?)\}", lambda m: Path(m.group(1)).read_text().strip(), part)
        parts.append(expand_env(part, env))
    return "$".join(parts)


def expand(document: Any, env: Mapping[str, str]) -> Any:
    """Every string of a provisioning document expanded (values.go applies it to the datasources' url, user,
    database, jsonData and secureJsonData strings alike)."""
    if isinstance(document, str):
        return interpolate(document, env)
    if isinstance(document, list):
        return [expand(v, env) for v in document]
    if isinstance(document, dict):
        return {k: expand(v, env) for k, v in document.items()}
    return document
