"""What a real API server refuses on decoding and validation, beyond admission.py.

- :mod:`.fields`: unknown fields (``fieldValidation`` Strict/Warn/Ignore), Secret and
  ConfigMap base64, as decoding into Go structs (or a CRD's structural schema) does.
- :mod:`.enums`: the enumerated built-in fields the controllers read (422 Unsupported).
- :mod:`.schema`: custom resources against their CRD's OpenAPI v3 schema (prune,
  default, validate).
- :func:`check`: the admission hook that runs all of the validation above.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simcluster.validation import enums, schema

if TYPE_CHECKING:
    from simcluster.resources import ResourceType
    from simcluster.store import Store

JSON = dict[str, Any]
Cause = tuple[str, str, str]

ANNOTATIONS_LIMIT = 262144


def check(rt: ResourceType, obj: JSON, old: JSON | None, store: Store) -> list[Cause]:
    """Causes for a 422 Invalid: annotation size, built-in enums, custom resource schema."""
    causes: list[Cause] = []
    annotations = (obj.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict):
        total = sum(
            len(str(k).encode()) + len(v.encode() if isinstance(v, str) else b"")
            for k, v in annotations.items()
        )
        if total > ANNOTATIONS_LIMIT:
            causes.append(
                (
                    "FieldValueTooLong",
                    "metadata.annotations",
                    f"Too long: must have at most {ANNOTATIONS_LIMIT} bytes",
                )
            )
    causes += enums.check(rt.group, rt.kind, obj)
    crd_schema = schema.for_object(rt, obj, store)
    if crd_schema is not None:
        causes += schema.admit(crd_schema, obj)
    return causes
