"""Who is calling: the master key (admin), virtual API keys (each bound to a tenant), or
nobody (a gateway with no keys configured is open).

Keys are never stored or logged in clear: the ring keeps SHA-256 digests, a lookup
hashes the presented token, finds the candidate by digest and confirms it with
`hmac.compare_digest`, so neither the comparison nor the dict lookup leaks how much of
a guess was right (the digest of a wrong guess shares nothing useful with a real one).
Keys created through the admin API can be persisted (digests only) to `keys_file`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hitrate.key_settings import KeySettings

log = logging.getLogger("hitrate.auth")

KEY_PREFIX = "sk-hr-"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def key_id_of(digest: bytes) -> str:
    """A stable public name for a key (for listing and deleting), not the key."""
    return "key_" + hashlib.blake2b(digest, digest_size=6).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    `scope` is what the cache isolates entries by: "" is the shared pool (the master
    key, keys with `shared: true`, and an open gateway); a tenant's own keys get
    "tenant:<name>".
    """

    tenant: str
    admin: bool = False
    shared: bool = False
    key_id: str = ""
    settings: KeySettings | None = None  # per-key cache settings (hitrate.key_settings)

    @property
    def scope(self) -> str:
        return "" if self.shared or self.admin else f"tenant:{self.tenant}"


ANONYMOUS = Principal(tenant="default", admin=True, shared=True)


@dataclass(slots=True)
class VirtualKey:
    digest: bytes
    tenant: str
    shared: bool = False
    name: str | None = None
    source: str = "config"  # "config" | "admin"
    settings: KeySettings | None = None

    @property
    def key_id(self) -> str:
        return key_id_of(self.digest)

    def public(self) -> dict[str, Any]:
        return {"id": self.key_id, "tenant": self.tenant, "shared": self.shared,
                "name": self.name, "source": self.source,
                "cache": self.settings.public() if self.settings else None}


def _checked_settings(data: Any) -> KeySettings | None:
    """Settings read back from the keys file, validated like the config's (raises
    ValueError if malformed)."""
    if data is None:
        return None
    from hitrate.config import KeyCacheConfig

    return KeySettings.from_mapping(KeyCacheConfig.model_validate(data).model_dump())


def token_from(headers: Mapping[str, str]) -> str:
    """`Authorization: Bearer <key>` (OpenAI SDK) or `api-key: <key>` (Azure SDK)."""
    header = headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return headers.get("api-key", "") or headers.get("x-api-key", "")


class KeyRing:
    def __init__(self, master_key: str | None = None,
                 keys: Iterable[Mapping[str, Any]] = (), keys_file: str | None = None):
        self._master = _digest(master_key) if master_key else None
        self._keys: dict[bytes, VirtualKey] = {}
        self._lock = threading.Lock()
        self.keys_file = Path(keys_file) if keys_file else None
        for item in keys:
            self._add(VirtualKey(_digest(item["key"]), item["tenant"], bool(item.get("shared")),
                                 item.get("name"),
                                 settings=KeySettings.from_mapping(item.get("cache"))))
        if self.keys_file is not None:
            self._load_file()

    @property
    def open(self) -> bool:
        """No master key and no virtual keys: every request is let in."""
        return self._master is None and not self._keys and self.keys_file is None

    def _add(self, key: VirtualKey) -> None:
        if self._master is not None and hmac.compare_digest(key.digest, self._master):
            raise ValueError("a virtual key must differ from the master key")
        self._keys[key.digest] = key

    def authenticate(self, token: str) -> Principal | None:
        """The caller behind `token`, or None if it is not a valid key."""
        if self.open:
            return ANONYMOUS
        if not token:
            return None
        digest = _digest(token)
        if self._master is not None and hmac.compare_digest(digest, self._master):
            return Principal(tenant="admin", admin=True, shared=True)
        key = self._keys.get(digest)
        if key is None or not hmac.compare_digest(key.digest, digest):
            return None
        return Principal(tenant=key.tenant, shared=key.shared, key_id=key.key_id,
                         settings=key.settings)

    # -- admin -------------------------------------------------------------------

    def create(self, tenant: str, shared: bool = False, name: str | None = None,
               key: str | None = None,
               settings: KeySettings | None = None) -> tuple[str, VirtualKey]:
        """A new key for `tenant`; returns (the key in clear, shown once, and its record)."""
        secret = key or KEY_PREFIX + secrets.token_urlsafe(24)
        record = VirtualKey(_digest(secret), tenant, shared, name, source="admin",
                            settings=settings)
        with self._lock:
            if record.digest in self._keys:
                raise ValueError("that key already exists")
            self._add(record)
            self._save_file()
        return secret, record

    def update_settings(self, key_id: str, settings: KeySettings | None) -> VirtualKey | None:
        """New cache settings for an admin-created key (None: no such key). Keys from the
        config file raise ValueError: a restart would bring their old settings back."""
        with self._lock:
            for record in self._keys.values():
                if record.key_id == key_id:
                    if record.source != "admin":
                        raise ValueError("this key is defined in the config file; change its "
                                         "settings there")
                    record.settings = settings
                    self._save_file()
                    return record
        return None

    def delete(self, key_id: str) -> bool:
        with self._lock:
            for digest, record in list(self._keys.items()):
                if record.key_id == key_id:
                    del self._keys[digest]
                    self._save_file()
                    return True
        return False

    def list(self) -> list[dict[str, Any]]:
        return [key.public() for key in self._keys.values()]

    def tenants(self) -> set[str]:
        return {key.tenant for key in self._keys.values()}

    # -- persistence of admin-created keys (digests only) ------------------------

    def _load_file(self) -> None:
        assert self.keys_file is not None
        try:
            data = json.loads(self.keys_file.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("cannot read keys file %s: %s", self.keys_file, exc)
            return
        for item in data.get("keys", []):
            try:
                self._add(VirtualKey(bytes.fromhex(item["sha256"]), item["tenant"],
                                     bool(item.get("shared")), item.get("name"), "admin",
                                     _checked_settings(item.get("cache"))))
            except (KeyError, TypeError, ValueError):
                log.warning("skipping a malformed entry in keys file %s", self.keys_file)

    def _save_file(self) -> None:
        if self.keys_file is None:
            return
        records = [{"sha256": k.digest.hex(), "tenant": k.tenant, "shared": k.shared,
                    "name": k.name, "cache": k.settings.public() if k.settings else None}
                   for k in self._keys.values() if k.source == "admin"]
        self.keys_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.keys_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"keys": records}, indent=1))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.keys_file)
