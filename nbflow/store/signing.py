"""Signed entries: what a remote store keeps under a cache key, and how a reader checks
who wrote it before unpickling anything.

Unpickling runs code, so an entry from a shared bucket is read only when it carries a
valid HMAC-SHA256 from a writer key the reader trusts (``NBFLOW_SIGNING_KEY`` of the
writer, listed in the reader's ``NBFLOW_TRUSTED_KEYS``). The signature covers the
cache key too, so an entry copied under another key does not verify.

An entry: ``MAGIC``, the lengths of the key name and the task name (1 and 2 bytes),
the key name, the task name, the creation time (8-byte float), the signature (32
bytes), then the pickle.

>>> keys = {"alice": b"0123456789abcdef"}
>>> blob = seal("k1", b"payload", task="demo", signer=("alice", keys["alice"]))
>>> entry = unseal("k1", blob, keys)
>>> bytes(entry.payload), entry.task, entry.signer
(b'payload', 'demo', 'alice')
>>> unseal("k2", blob, keys)
Traceback (most recent call last):
...
nbflow.store.signing.SignatureError: the signature of entry 'k2' by key 'alice' does not match
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import time
from dataclasses import dataclass

MAGIC = b"NBF1"
_LENGTHS = struct.Struct(">BH")
_TIME = struct.Struct(">d")
_MAC = 32


class SignatureError(Exception):
    """An entry that must not be unpickled: unsigned, damaged or signed by a key the
    reader does not trust."""


@dataclass(frozen=True)
class Entry:
    """A checked entry: the pickle (a view into the bytes read) and what it says."""

    payload: memoryview
    task: str
    signer: str
    created: float


def _mac(secret: bytes, key: str, header: bytes | memoryview, payload: bytes | memoryview) -> bytes:
    mac = hmac.new(secret, key.encode(), hashlib.sha256)
    mac.update(b"\0")
    mac.update(header)
    mac.update(payload)
    return mac.digest()


def seal(
    key: str,
    payload: bytes,
    *,
    task: str,
    signer: tuple[str, bytes],
    created: float | None = None,
) -> bytes:
    """The entry to keep under ``key``: ``payload`` signed with ``signer`` (name, secret)."""
    name, secret = signer
    name_b, task_b = name.encode(), task.encode()[:65535]
    when = time.time() if created is None else created
    header = MAGIC + _LENGTHS.pack(len(name_b), len(task_b)) + name_b + task_b + _TIME.pack(when)
    # One copy of the pickle (the join): a 300 MB value is joined in well under a second.
    return b"".join((header, _mac(secret, key, header, payload), payload))


def unseal(key: str, blob: bytes | memoryview, trusted: dict[str, bytes]) -> Entry:
    """The entry in ``blob`` read under ``key``, if a trusted key signed it; else
    ``SignatureError`` saying why. Reads no pickle."""
    view = memoryview(blob)
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise SignatureError(f"entry '{key}' is not a signed nbflow entry")
    at = len(MAGIC)
    try:
        name_len, task_len = _LENGTHS.unpack_from(view, at)
        at += _LENGTHS.size
        name = bytes(view[at : at + name_len]).decode()
        at += name_len
        task = bytes(view[at : at + task_len]).decode()
        at += task_len
        (created,) = _TIME.unpack_from(view, at)
        at += _TIME.size
    except (struct.error, UnicodeDecodeError):
        raise SignatureError(f"entry '{key}' has a damaged header") from None
    header, mac, payload = view[:at], bytes(view[at : at + _MAC]), view[at + _MAC :]
    secret = trusted.get(name)
    if secret is None:
        raise SignatureError(f"entry '{key}' is signed by key '{name}', which is not trusted")
    if len(mac) != _MAC or not hmac.compare_digest(mac, _mac(secret, key, header, payload)):
        raise SignatureError(f"the signature of entry '{key}' by key '{name}' does not match")
    return Entry(payload, task, name, created)


__all__ = ["Entry", "SignatureError", "seal", "unseal"]
