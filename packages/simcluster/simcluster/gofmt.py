"""Values in error messages formatted as Go formats them (``%#v`` of field.Invalid).

kube-apiserver's ``field.Invalid`` prints a non-scalar bad value with ``%#v``:
``map[string]string{"app":"b"}`` (keys sorted), ``[]string{"a", "b"}``, and a label
selector as ``v1.LabelSelector{MatchLabels:..., MatchExpressions:...}``; never a
Python ``repr``.
"""

from __future__ import annotations

import json
from typing import Any


def _q(text: Any) -> str:
    return json.dumps(str(text))


def string_map(value: Any) -> str:
    """``map[string]string{"a":"b"}`` (``map[string]string(nil)`` when unset)."""
    if not isinstance(value, dict):
        return "map[string]string(nil)"
    return (
        "map[string]string{" + ", ".join(f"{_q(k)}:{_q(v)}" for k, v in sorted(value.items())) + "}"
    )


def strings(value: Any) -> str:
    """``[]string{"a", "b"}`` (``[]string(nil)`` when unset)."""
    if not isinstance(value, list):
        return "[]string(nil)"
    return "[]string{" + ", ".join(_q(v) for v in value) + "}"


def label_selector(value: Any) -> str:
    """A ``metav1.LabelSelector`` as ``%#v`` prints it (``(*v1.LabelSelector)(nil)``)."""
    if not isinstance(value, dict):
        return "(*v1.LabelSelector)(nil)"
    exprs = value.get("matchExpressions")
    if isinstance(exprs, list):
        items = ", ".join(
            f"v1.LabelSelectorRequirement{{Key:{_q(e.get('key', ''))}, "
            f"Operator:{_q(e.get('operator', ''))}, Values:{strings(e.get('values'))}}}"
            for e in exprs
            if isinstance(e, dict)
        )
        expr_text = f"[]v1.LabelSelectorRequirement{{{items}}}"
    else:
        expr_text = "[]v1.LabelSelectorRequirement(nil)"
    return (
        f"v1.LabelSelector{{MatchLabels:{string_map(value.get('matchLabels'))}, "
        f"MatchExpressions:{expr_text}}}"
    )
