"""The pure store and patch cores, without HTTP: history compaction, fields, patches."""

from __future__ import annotations

import pytest
from simcluster import admission, fieldpaths, managed, patch
from simcluster.errors import ApiError
from simcluster.resources import ResourceRegistry
from simcluster.selectors import match_label_selector, parse_label_selector
from simcluster.store import Store


def _store(history: int = 3) -> Store:
    store = Store(ResourceRegistry(), admission.admit, history=history)
    ns = store.registry.by_key("", "namespaces")
    assert ns is not None
    store.create(ns, {"metadata": {"name": "default"}})
    return store


def test_watch_from_compacted_resource_version_is_410() -> None:
    store = _store(history=3)
    cm = store.registry.by_key("", "configmaps")
    assert cm is not None
    first = store.create(cm, {"metadata": {"name": "a"}}, "default")
    for i in range(5):
        store.create(cm, {"metadata": {"name": f"b{i}"}}, "default")
    with pytest.raises(ApiError) as err:
        store.watch(
            cm,
            "default",
            lambda _l: True,
            lambda _o: True,
            int(first["metadata"]["resourceVersion"]),
        )
    assert err.value.code == 410 and err.value.reason == "Expired"
    events, _ = store.watch(
        cm, "default", lambda _l: True, lambda _o: True, store.resource_version - 1
    )
    assert [e.obj["metadata"]["name"] for _, e in events] == ["b4"]


def test_no_op_update_keeps_resource_version() -> None:
    store = _store()
    cm = store.registry.by_key("", "configmaps")
    assert cm is not None
    obj = store.create(cm, {"metadata": {"name": "same"}, "data": {"a": "1"}}, "default")
    again = store.update(cm, obj, "default")
    assert again["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]


def test_fields_v1_round_trip() -> None:
    obj = {
        "metadata": {"labels": {"a": "1"}},
        "spec": {"containers": [{"name": "c", "image": "i"}], "args": ["x"]},
    }
    paths = fieldpaths.leaves(obj)
    assert fieldpaths.from_fields_v1(fieldpaths.to_fields_v1(paths)) == paths
    assert (("f", "spec"), ("f", "containers"), ("k", '{"name":"c"}'), ("f", "image")) in paths
    assert (("f", "spec"), ("f", "args")) in paths


def test_apply_removes_fields_it_stopped_applying() -> None:
    first = managed.apply(
        None, {"metadata": {"name": "x", "labels": {"a": "1", "b": "2"}}}, "m", "v1", "t", False
    )
    second = managed.apply(
        first, {"metadata": {"name": "x", "labels": {"a": "1"}}}, "m", "v1", "t", False
    )
    assert second["metadata"]["labels"] == {"a": "1"}


def test_strategic_merge_retain_keys_and_primitive_delete() -> None:
    live = {
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
        "finalizers": ["a", "b"],
    }
    out = patch.strategic_merge_patch(
        live,
        {
            "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
            "$deleteFromPrimitiveList/finalizers": ["a"],
        },
    )
    assert out == {"strategy": {"type": "Recreate"}, "finalizers": ["b"]}


def test_selectors() -> None:
    assert parse_label_selector("a in (x, y),b notin (z),!c")({"a": "y", "b": "q"})
    assert not parse_label_selector("a=1")({"a": "2"})
    sel = {
        "matchLabels": {"app": "w"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe"]}],
    }
    assert match_label_selector(sel, {"app": "w", "tier": "fe"})
    assert not match_label_selector(sel, {"app": "w"})
