"""Volume set-up as the kubelet does it: a pod whose ConfigMap or Secret is missing waits.

:func:`mount_errors` lists, per volume, why it cannot be set up (the text after
``MountVolume.SetUp failed for volume "<name>" : `` in the kubelet's ``FailedMount``
event): ``configmap "cfg" not found``, ``secret "creds" not found``, a missing key named
in ``items``. ``optional: true`` sources never block. PersistentVolumeClaims are checked
by the scheduler (a missing claim keeps the pod unscheduled, as on a real cluster).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simcluster.store import Store

JSON = dict[str, Any]

_KINDS = {"configMap": ("configmaps", "configmap"), "secret": ("secrets", "secret")}


def _source_error(store: Store, ns: str, kind: str, src: JSON) -> str | None:
    plural, word = _KINDS[kind]
    name = src.get("name") if kind == "configMap" else src.get("secretName", src.get("name"))
    optional = bool(src.get("optional"))
    rt = store.registry.by_key("", plural)
    if rt is None or not name:
        return None
    obj = store.try_get(rt, ns, str(name))
    if obj is None:
        return None if optional else f'{word} "{name}" not found'
    keys = {**(obj.get("data") or {}), **(obj.get("binaryData") or {})}
    for item in src.get("items") or []:
        key = (item or {}).get("key")
        if key and key not in keys and not optional:
            what = "config" if kind == "configMap" else "secret"
            return f"{word} references non-existent {what} key: {key}"
    return None


def mount_errors(store: Store, pod: JSON) -> list[tuple[str, str]]:
    """``(volume name, error)`` for every volume of ``pod`` that cannot be set up now."""
    ns = pod["metadata"].get("namespace", "default")
    out: list[tuple[str, str]] = []
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        if not isinstance(vol, dict):
            continue
        errs: list[str] = []
        for kind in _KINDS:
            src = vol.get(kind)
            if isinstance(src, dict) and (err := _source_error(store, ns, kind, src)):
                errs.append(err)
        for source in (vol.get("projected") or {}).get("sources") or []:
            for kind in _KINDS:
                src = (source or {}).get(kind)
                if isinstance(src, dict) and (err := _source_error(store, ns, kind, src)):
                    errs.append(err)
        if errs:
            out.append(
                (str(vol.get("name", "")), errs[0] if len(errs) == 1 else f"[{', '.join(errs)}]")
            )
    return out
