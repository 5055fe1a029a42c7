"""Signed entries: what a remote store keeps under a cache key, and how a reader checks
who wrote it before unpickling anything.

Unpickling runs code, so an entry from a shared bucket is read only when it carries a
valid HMAC-SHA256 from a writer key the reader trusts (``NBFLOW_SIGNING_KEY`` of the
writer, listed in the reader's ``NBFLOW_TRUSTED_KEYS``). The signature covers the
cache key too, so an entry copied under another key does not verify.

An entry: ``MAGIC``, the lengths of the key name and the task name (1 and 2 bytes),
the key name, the task name, the creation time (8-byte float), the number of parts
(4 bytes) and each part's length (8 bytes each), the signature (32 bytes), then the
parts: a pickle and the buffers it keeps out of band (protocol 5), so that a large
array is signed and sent without being copied into the pickle first. The header
and each part are padded with zeros to a multiple of 64 bytes, so that an array read
back in place is aligned.

>>> keys = {"alice": b"0123456789abcdef"}
>>> parts = seal("k1", [b"payload", b"buffer"], task="demo", signer=("alice", keys["alice"]))
>>> entry = unseal("k1", b"".join(parts), keys)
>>> [bytes(p) for p in entry.parts], entry.task, entry.signer
([b'payload', b'buffer'], 'demo', 'alice')
>>> unseal("k2", b"".join(parts), keys)
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
from typing import Any

MAGIC = b"NBF1"
_LENGTHS = struct.Struct(">BH")
_TIME = struct.Struct(">d")
_COUNT = struct.Struct(">I")
_LENGTH = struct.Struct(">Q")
ALIGN = 64


def _pad(n: int) -> bytes:
    return b"\0" * (-n % ALIGN)


_MAC = 32


class SignatureError(Exception):
    """An entry that must not be unpickled: unsigned, damaged or signed by a key the
    reader does not trust. ``kind`` says which (``unsigned``, ``damaged``,
    ``untrusted``, ``mismatch``) and ``signer`` names the key, when known."""

    def __init__(self, message: str, kind: str, signer: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.signer = signer


@dataclass(frozen=True)
class Entry:
    """A checked entry: its parts (views into the bytes read) and what it says."""

    parts: list[memoryview]
    task: str
    signer: str
    created: float


Buffer = bytes | bytearray | memoryview


def _new_mac(secret: bytes, key: str, header: Buffer) -> Any:
    # The header holds every part's length, so the parts cannot be re-cut; the MAC
    # covers every byte but its own, padding included, so it can be computed as the
    # bytes arrive.
    mac = hmac.new(secret, key.encode(), hashlib.sha256)
    mac.update(b"\0")
    mac.update(header)
    return mac


def seal(
    key: str,
    parts: list[Buffer],
    *,
    task: str,
    signer: tuple[str, bytes],
    created: float | None = None,
) -> list[Buffer]:
    """The entry to keep under ``key``, as buffers to write one after the other: the
    header with the signature by ``signer`` (name, secret), then ``parts`` as given
    (not copied)."""
    name, secret = signer
    name_b, task_b = name.encode(), task.encode()[:65535]
    when = time.time() if created is None else created
    views = [memoryview(p).cast("B") for p in parts]
    header = b"".join(
        (
            MAGIC,
            _LENGTHS.pack(len(name_b), len(task_b)),
            name_b,
            task_b,
            _TIME.pack(when),
            _COUNT.pack(len(views)),
            *(_LENGTH.pack(v.nbytes) for v in views),
        )
    )
    body: list[Buffer] = [_pad(len(header) + _MAC)]
    for view in views:
        body.append(view)
        if view.nbytes % ALIGN:
            body.append(_pad(view.nbytes))
    mac = _new_mac(secret, key, header)
    for part in body:
        mac.update(part)
    return [header + mac.digest() + body[0], *body[1:]]


class Verifier:
    """Checks an entry as its bytes arrive: built from its first bytes (the whole
    header, which names the signer: an untrusted one is refused before the rest is
    read), fed the bytes read so far, finished with all of them.

    Raises ``SignatureError`` saying why an entry must not be read.
    """

    def __init__(self, key: str, head: memoryview, trusted: dict[str, bytes]) -> None:
        self.key = key
        if bytes(head[: len(MAGIC)]) != MAGIC:
            raise SignatureError(f"entry '{key}' is not a signed nbflow entry", "unsigned")
        at = len(MAGIC)
        try:
            name_len, task_len = _LENGTHS.unpack_from(head, at)
            at += _LENGTHS.size
            self.signer = bytes(head[at : at + name_len]).decode()
            at += name_len
            self.task = bytes(head[at : at + task_len]).decode()
            at += task_len
            (self.created,) = _TIME.unpack_from(head, at)
            at += _TIME.size
            (count,) = _COUNT.unpack_from(head, at)
            at += _COUNT.size
            self.lengths = [
                _LENGTH.unpack_from(head, at + i * _LENGTH.size)[0] for i in range(count)
            ]
            at += count * _LENGTH.size
            if len(head) < at + _MAC:
                raise struct.error("short")
        except (struct.error, UnicodeDecodeError):
            raise SignatureError(f"entry '{key}' has a damaged header", "damaged") from None
        secret = trusted.get(self.signer)
        if secret is None:
            raise SignatureError(
                f"entry '{key}' is signed by key '{self.signer}', which is not trusted",
                "untrusted",
                self.signer,
            )
        self.at = at
        self.expected = bytes(head[at : at + _MAC])
        self.mac = _new_mac(secret, key, head[:at])
        self.hashed = at + _MAC

    def feed(self, view: memoryview, upto: int) -> None:
        """The bytes ``view[:upto]`` have arrived."""
        if upto > self.hashed:
            self.mac.update(view[self.hashed : upto])
            self.hashed = upto

    def finish(self, view: memoryview) -> Entry:
        """The checked entry, all of whose bytes are ``view``."""
        self.feed(view, len(view))
        parts, start = [], self.at + _MAC
        start += -start % ALIGN
        for length in self.lengths:
            parts.append(view[start : start + length])
            start += length + (-length % ALIGN)
        if start != len(view):
            raise SignatureError(
                f"entry '{self.key}' is cut short or has bytes added", "damaged", self.signer
            )
        if not hmac.compare_digest(self.expected, self.mac.digest()):
            raise SignatureError(
                f"the signature of entry '{self.key}' by key '{self.signer}' does not match",
                "mismatch",
                self.signer,
            )
        return Entry(parts, self.task, self.signer, self.created)


def unseal(key: str, blob: bytes | memoryview, trusted: dict[str, bytes]) -> Entry:
    """The entry in ``blob`` read under ``key``, if a trusted key signed it; else
    ``SignatureError`` saying why. Reads no pickle."""
    view = memoryview(blob)
    return Verifier(key, view, trusted).finish(view)


__all__ = ["Entry", "SignatureError", "Verifier", "seal", "unseal"]
