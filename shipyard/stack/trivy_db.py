"""A trivy vulnerability DB served from the stack's own registry, as air-gapped sites do.

Nothing here can download trivy's public DB, and a scan without one cannot look for
vulnerabilities (the gate then blocks). So the stack makes a small DB of its own and
pushes it to its registry as ``<registry>/shipyard/trivy-db:2``, an OCI artifact laid out
exactly like the public one (config ``application/vnd.aquasec.trivy.config.v1+json``,
one ``application/vnd.aquasec.trivy.db.layer.v1.tar+gzip`` layer holding ``trivy.db`` and
``metadata.json``). Scans then take it with ``--db-repository``, as they would take a
mirror of the real DB (``oras cp ghcr.io/aquasecurity/trivy-db:2 <registry>/...``).

The DB file is trivy's bbolt format, written by a 60-line Go program against the bbolt
library (``golang-go`` and ``golang-github-coreos-bbolt-dev``, which ``scripts/setup.sh``
installs); its advisories are test data (IDs ``CVE-2099-*``), clearly not real ones.
The built file is cached by the hash of the program and the advisories.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from shipyard.core.errors import ConfigError, PermanentError
from shipyard.core.registry import RegistryAuth, open_client

__all__ = [
    "ADVISORIES",
    "CONFIG_MEDIA_TYPE",
    "LAYER_MEDIA_TYPE",
    "TRIVY_DB_REPOSITORY",
    "TRIVY_DB_TAG",
    "build_db",
    "db_layer",
    "ensure_trivy_db",
    "push_db",
    "trivy_db_ref",
]

TRIVY_DB_REPOSITORY = "shipyard/trivy-db"
TRIVY_DB_TAG = "2"  # trivy-db's schema version: what trivy asks a mirror for
CONFIG_MEDIA_TYPE = "application/vnd.aquasec.trivy.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
BBOLT_SOURCE = Path("/usr/share/gocode/src/go.etcd.io/bbolt")
PACKAGES_HINT = "apt-get install -y golang-go golang-github-coreos-bbolt-dev"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "shipyard"

# Trivy's DB schema 2: buckets "<source> <release>" -> package -> advisory (fixed
# version), "vulnerability" -> ID -> details, "data-source" -> bucket -> source. Each
# entry is a bucket path, a key and its JSON value.
ADVISORIES: list[dict[str, Any]] = [
    {"path": ["data-source"], "key": "alpine 3.19",
     "value": {"ID": "alpine", "Name": "Alpine Secdb (test)",
               "URL": "https://secdb.alpinelinux.org/"}},
    {"path": ["alpine 3.19", "busybox"], "key": "CVE-2099-0001",
     "value": {"FixedVersion": "1.36.1-r20"}},
    {"path": ["alpine 3.19", "zlib"], "key": "CVE-2099-0002",
     "value": {"FixedVersion": "1.3.1-r0"}},
    {"path": ["vulnerability"], "key": "CVE-2099-0001",
     "value": {"Title": "busybox: test advisory (shipyard tiny DB)", "Severity": "CRITICAL"}},
    {"path": ["vulnerability"], "key": "CVE-2099-0002",
     "value": {"Title": "zlib: test advisory (shipyard tiny DB)", "Severity": "MEDIUM"}},
    {"path": ["data-source"], "key": "pip::GitHub Security Advisory pip",
     "value": {"ID": "ghsa", "Name": "GitHub Security Advisory pip",
               "URL": "https://github.com/advisories"}},
    {"path": ["pip::GitHub Security Advisory pip", "requests"], "key": "GHSA-test-0000-0001",
     "value": {"PatchedVersions": ["2.32.0"], "VulnerableVersions": ["<2.32.0"]}},
    {"path": ["vulnerability"], "key": "GHSA-test-0000-0001",
     "value": {"Title": "requests: test advisory (shipyard tiny DB)", "Severity": "HIGH"}},
]  # fmt: skip

METADATA = {
    "Version": 2,
    "NextUpdate": "2099-01-01T00:00:00Z",
    "UpdatedAt": "2026-11-27T00:00:00Z",
    "DownloadedAt": "2026-11-27T00:00:00Z",
}

MKDB_GO = """\
// mkdb writes a trivy vulnerability DB (a bbolt file) from a JSON list of
// {"path": [bucket, nested bucket...], "key": ..., "value": {...}} entries.
package main

import (
	"encoding/json"
	"log"
	"os"

	bolt "go.etcd.io/bbolt"
)

type entry struct {
	Path  []string        `json:"path"`
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

func main() {
	if len(os.Args) != 3 {
		log.Fatal("usage: mkdb ENTRIES.json OUT.db")
	}
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	var entries []entry
	if err := json.Unmarshal(data, &entries); err != nil {
		log.Fatal(err)
	}
	db, err := bolt.Open(os.Args[2], 0o644, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		for _, e := range entries {
			bucket, err := tx.CreateBucketIfNotExists([]byte(e.Path[0]))
			if err != nil {
				return err
			}
			for _, name := range e.Path[1:] {
				if bucket, err = bucket.CreateBucketIfNotExists([]byte(name)); err != nil {
					return err
				}
			}
			if err := bucket.Put([]byte(e.Key), e.Value); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}
"""


def trivy_db_ref(registry: str) -> str:
    """What scans pass as ``--db-repository``: ``<registry>/shipyard/trivy-db:2``."""
    return f"{registry}/{TRIVY_DB_REPOSITORY}:{TRIVY_DB_TAG}"


def _fingerprint(advisories: list[dict[str, Any]]) -> str:
    body = MKDB_GO + json.dumps(advisories, sort_keys=True) + json.dumps(METADATA)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def build_db(dest: Path | None = None, advisories: list[dict[str, Any]] | None = None) -> Path:
    """A directory holding ``trivy.db`` and ``metadata.json`` (trivy's cache ``db/``).

    Built with Go and bbolt once per content (cached under ~/.cache/shipyard); copied to
    ``dest`` when given. ConfigError naming the packages when Go or bbolt is missing.
    """
    entries = ADVISORIES if advisories is None else advisories
    built = DEFAULT_CACHE / f"trivy-db-{_fingerprint(entries)}"
    if not (built / "trivy.db").is_file():
        go = shutil.which("go")
        if go is None or not BBOLT_SOURCE.is_dir():
            raise ConfigError(
                "building the stack's trivy DB needs Go and bbolt", hint=PACKAGES_HINT
            )
        with tempfile.TemporaryDirectory(prefix="shipyard-mkdb-") as tmp:
            work = Path(tmp)
            (work / "main.go").write_text(MKDB_GO)
            (work / "entries.json").write_text(json.dumps(entries))
            env = {
                **os.environ,
                "GO111MODULE": "off",
                "GOPATH": str(BBOLT_SOURCE.parents[2]),
                "GOCACHE": str(work / "gocache"),
                "GOFLAGS": "",
            }
            _run([go, "build", "-o", str(work / "mkdb"), "main.go"], work, env)
            staging = work / "db"
            staging.mkdir()
            _run([str(work / "mkdb"), str(work / "entries.json"), str(staging / "trivy.db")],
                 work, env)  # fmt: skip
            (staging / "metadata.json").write_text(json.dumps(METADATA))
            built.parent.mkdir(parents=True, exist_ok=True)
            partial = built.with_name(built.name + f".{os.getpid()}.tmp")
            shutil.copytree(staging, partial, dirs_exist_ok=True)
            try:
                partial.rename(built)
            except OSError:  # another process built it first
                shutil.rmtree(partial, ignore_errors=True)
    if dest is None:
        return built
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("trivy.db", "metadata.json"):
        shutil.copyfile(built / name, dest / name)
    return dest


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip()[-400:]
        raise PermanentError(f"building the trivy DB failed ({Path(argv[0]).name}): {tail}")


def db_layer(db_dir: Path) -> bytes:
    """The DB layer: a reproducible tar.gz of ``trivy.db`` and ``metadata.json``, at its
    root, as trivy unpacks it into ``<cache>/db``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("trivy.db", "metadata.json"):
            data = (db_dir / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def push_db(registry: str, db_dir: Path, *, insecure: bool | None = None) -> str:
    """Push ``db_dir`` to ``registry`` as trivy's DB artifact; the manifest digest."""
    layer = db_layer(db_dir)
    config = b"{}"
    with open_client(RegistryAuth.for_registry(registry, insecure=insecure)) as client:
        config_digest = client.push_blob(TRIVY_DB_REPOSITORY, config)
        layer_digest = client.push_blob(TRIVY_DB_REPOSITORY, layer)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": CONFIG_MEDIA_TYPE,
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": LAYER_MEDIA_TYPE,
                    "digest": layer_digest,
                    "size": len(layer),
                    "annotations": {"org.opencontainers.image.title": "db.tar.gz"},
                }
            ],
            "annotations": {"org.opencontainers.image.description": "shipyard test trivy DB"},
        }
        return client.put_manifest(TRIVY_DB_REPOSITORY, TRIVY_DB_TAG, manifest, MANIFEST_MEDIA_TYPE)


def ensure_trivy_db(registry: str) -> str:
    """Make sure ``<registry>/shipyard/trivy-db:2`` is there; return that reference.

    Cheap when present (one manifest request); otherwise builds the DB (or takes the
    cached build) and pushes it.
    """
    with open_client(RegistryAuth.for_registry(registry)) as client:
        present = client.manifest(TRIVY_DB_REPOSITORY, TRIVY_DB_TAG) is not None
    if not present:
        push_db(registry, build_db())
    return trivy_db_ref(registry)
