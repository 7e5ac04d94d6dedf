"""Label and field selectors: the query-string forms and the structured LabelSelector.

Pure functions; a malformed selector raises a 400 BadRequest ``ApiError``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from simcluster.errors import bad_request

JSON = dict[str, Any]
Predicate = Callable[[JSON], bool]

_SET_RE = re.compile(r"^\s*(!?)([A-Za-z0-9_./-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_./-]*)\s*$")


def _split_terms(text: str) -> list[str]:
    terms: list[str] = []
    depth = 0
    current = ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        terms.append(current)
    return [t for t in terms if t.strip()]


LabelCheck = Callable[[Mapping[str, str]], bool]


def _label_check(key: str, op: str, values: frozenset[str]) -> LabelCheck:
    """One label requirement as a predicate (op: =, !=, in, notin, exists, !exists)."""

    def check(labels: Mapping[str, str]) -> bool:
        if op == "exists":
            return key in labels
        if op == "!exists":
            return key not in labels
        value = labels.get(key)
        if op in ("=", "in"):
            return value in values
        return value not in values

    return check


def _field_check(path: str, negate: bool, value: str) -> Predicate:
    def check(obj: JSON) -> bool:
        return (field_value(obj, path) == value) != negate

    return check


def parse_label_selector(text: str | None) -> Callable[[Mapping[str, str]], bool]:
    """Compile ``a=b,c!=d,e in (x,y),!f,g`` into a predicate over a labels map."""
    if not text:
        return lambda _labels: True
    checks: list[LabelCheck] = []
    for term in _split_terms(text):
        eq = _EQ_RE.match(term)
        if eq:
            key, op, value = eq.groups()
            checks.append(_label_check(key, "!=" if op == "!=" else "=", frozenset([value])))
            continue
        st = _SET_RE.match(term)
        if not st:
            raise bad_request(f"unable to parse requirement: invalid label selector: {term!r}")
        neg, key, op, values = st.groups()
        if op is None:
            checks.append(_label_check(key, "!exists" if neg else "exists", frozenset()))
            continue
        if neg:
            raise bad_request(f"unable to parse requirement: {term!r}")
        vals = frozenset(v.strip() for v in values.split(",") if v.strip())
        checks.append(_label_check(key, op, vals))
    return lambda labels: all(c(labels) for c in checks)


def match_label_selector(selector: JSON | None, labels: Mapping[str, str]) -> bool:
    """Evaluate a structured ``LabelSelector`` (matchLabels + matchExpressions).

    An empty selector matches everything; ``None`` matches nothing (as in controllers).
    """
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key = expr.get("key", "")
        op = expr.get("operator", "")
        values = set(expr.get("values") or [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def selector_to_string(selector: JSON) -> str:
    """Render a structured LabelSelector in query-string form (for status.selector)."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op = expr.get("key", ""), expr.get("operator", "")
        vals = ",".join(sorted(expr.get("values") or []))
        if op == "In":
            parts.append(f"{key} in ({vals})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({vals})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def field_value(obj: JSON, path: str) -> str:
    """The string value at a dotted field path (``""`` when absent), as field selectors see it."""
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict):
            return ""
        node = node.get(part)
        if node is None:
            return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    if isinstance(node, dict | list):
        return ""
    return str(node)


def parse_field_selector(text: str | None) -> Predicate:
    """Compile ``metadata.name=x,status.phase!=Running`` into a predicate over objects.

    Any dotted path is accepted (``metadata.name``, ``metadata.namespace``,
    ``status.phase``, ``spec.nodeName``, ``involvedObject.uid``, ...).
    """
    if not text:
        return lambda _obj: True
    checks: list[Predicate] = []
    for term in _split_terms(text):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not m:
            raise bad_request(f"invalid field selector: {term!r}")
        path, op, value = m.groups()
        checks.append(_field_check(path, op == "!=", value))
    return lambda obj: all(c(obj) for c in checks)
