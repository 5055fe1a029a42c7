"""Results on object storage: ``s3://``, ``gs://`` and ``az://`` buckets.

``open_remote_store(url)`` (the opener of those schemes) gives a ``TieredStore``: the
local file store (the home folder) in front of a ``RemoteStore``. Each cloud's client
is configured the way its own tools are (``clouds.py``).

The client is obstore (Rust, ``object_store``), imported on first use. Measured over
loopback against a moto server on this project's machines: a small object's put/get
took about 5 ms with obstore and 16/28 ms with s3fs, a 100 MB get 0.6 s against 2.3 s;
s3fs also pulls in aiobotocore.

Layout under the prefix: ``r/<cache key>`` holds a signed entry (``signing.py``);
``t/<task>/<signer>/<cache key>`` is an empty marker that lets ``info`` and ``clear``
count and select entries per task, and a run find the entries of its tasks signed by
keys it trusts, with one listing per task instead of a request per key. An entry's
size and creation time are the object's. Results of tasks with ``cache_expire`` stay
in the local tier only (an object has no expiry of its own).
"""

from __future__ import annotations

import logging
import pickle
import re
import threading
import urllib.parse
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from nbflow import settings
from nbflow.errors import NbflowError
from nbflow.store.clouds import cloud_of
from nbflow.store.file import CacheWarning
from nbflow.store.pools import hashing, pool
from nbflow.store.signing import SignatureError, Verifier, seal, unseal

log = logging.getLogger("nbflow")

T = TypeVar("T")

_MISS: Any = object()
# Requests in flight at once when many keys are read (a step's cache hits): the server,
# not this process, is what waits, so more threads than cores pay off.
PARALLEL = 32
_clients_lock = threading.Lock()
# Clients by what configures them, shared by the stores of a process: a new client
# pays for its first connection (about 0.2 s against a local server), every run would.
_clients: dict[tuple[str | None, ...], Any] = {}
# When a client last answered the start-of-run check: a run within CHECK_AGAIN seconds
# of a good check skips it (a failure during the run is still caught, and warned).
_checked: dict[tuple[str | None, ...], float] = {}
CHECK_AGAIN = 30.0
# Entries at least this large are read into writable memory chunk by chunk.
STREAM_FROM = 2**20


def _threads() -> ThreadPoolExecutor:
    """Threads for requests to buckets."""
    return pool("remote", PARALLEL)


class StoreUnavailableError(NbflowError):
    """A remote result store cannot be used: the message says which and how to fix it."""


# What a server says when it refuses the credentials. The status codes only as numbers
# of their own: "after 244.764019ms" holds "401" and is no refusal.
_REFUSED = (
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "AuthenticationFailed",
    "AuthorizationFailure",
    "credential",
    "Forbidden",
    "Unauthorized",
)
_REFUSED_STATUS = re.compile(r"(?<![\w.])40[13](?![\w.])")


class RemoteStoreWarning(CacheWarning):
    """A remote store failed during a run; the run goes on with the local tier."""


class UnsignedEntryWarning(CacheWarning):
    """A remote entry was not read: unsigned, damaged or signed by an untrusted key."""


def parse_url(url: str) -> tuple[str, str]:
    """The bucket (or container) and prefix, without a trailing slash, of a store URL.

    >>> parse_url("s3://team-results/projects/churn/")
    ('team-results', 'projects/churn')
    """
    return cloud_of(url).parse(url)


# Ranges of names listed at once: keys are hex digests, so each holds about 1/16 of
# them (a name that is not hex still falls in exactly one range).
_HEX = "0123456789abcdef"
_RANGES: list[tuple[str | None, str | None]] = [
    (None if i == 0 else _HEX[i - 1] + "\uffff", None if i == 15 else c + "\uffff")
    for i, c in enumerate(_HEX)
]


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _marker(task: str, signer: str, key: str) -> str:
    return f"t/{_quote(task)}/{_quote(signer)}/{key}"


def _parse_marker(path: str) -> tuple[str, str | None, str]:
    """(task, signer, key) of a marker's path (its signer is None in a marker written
    before markers named their signer: ``t/<task>/<key>``)."""
    rest = path.split("/")[1:]  # paths are listed relative to the store's prefix
    task = urllib.parse.unquote(rest[0])
    signer = urllib.parse.unquote(rest[1]) if len(rest) == 3 else None
    return task, signer, rest[-1]


class RemoteStore:
    """Signed task results in a bucket, by cache key (the remote tier).

    Reads only entries signed by a trusted key (``NBFLOW_TRUSTED_KEYS`` and the
    writer's own ``NBFLOW_SIGNING_KEY``); writes only with a signing key. A request
    that fails during a run turns the store off for the rest of the run with one
    ``RemoteStoreWarning``; ``begin_run`` checks it can be used and raises
    ``StoreUnavailableError`` naming the store and the fix when it cannot.
    """

    def __init__(self, url: str) -> None:
        self.cloud = cloud_of(url)
        self.bucket, self.prefix = self.cloud.parse(url)
        self.url = f"{self.cloud.scheme}://{self.bucket}/{self.prefix}".rstrip("/")
        self._client: Any = None
        self._lock = threading.Lock()
        self.disabled: str | None = None
        self.signer = settings.signing_key()
        self.trusted = settings.trusted_keys()
        self.shipped = False  # keys given by the process that sent this store (a worker's)
        # (kind, signer) of the entries refused so far in this run: one warning each,
        # not one per entry (a colleague's untrusted key can sign thousands).
        self._refused: set[tuple[str, str | None]] = set()
        self._uploads: set[Any] = set()  # writes still on their way (futures)
        self._unsent: dict[str, str] = {}  # writes that failed: key -> task
        # Requests made, by kind (get, head, put, list, delete), counted where made.
        self.requests: Counter[str] = Counter()

    def __getstate__(self) -> dict[str, Any]:
        if self.shipped:
            return {"url": self.url, "keys": (self.signer, self.trusted)}
        return {"url": self.url}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"])  # type: ignore[misc]
        if "keys" in state:
            self.signer, self.trusted = state["keys"]
            self.shipped = True

    def for_workers(self) -> RemoteStore:
        """This store as an executor's workers use it: it pickles with this process's
        signing and trusted keys, so workers sign and check entries as this run does
        (their own environment supplies the cloud's credentials)."""
        copy = RemoteStore(self.url)
        copy.signer, copy.trusted, copy.shipped = self.signer, self.trusted, True
        return copy

    def __repr__(self) -> str:
        return f"RemoteStore('{self.url}')"

    # -- the client ---------------------------------------------------------------

    def _config(self) -> tuple[str | None, ...]:
        return (self.cloud.scheme, self.bucket, self.prefix, *self.cloud.config())

    @property
    def client(self) -> Any:
        if self._client is None:
            config = self._config()
            with self._lock, _clients_lock:
                if self._client is None:
                    client = _clients.get(config)
                    if client is None:
                        client = _clients[config] = self._connect()
                    self._client = client
        return self._client

    def _connect(self) -> Any:
        try:
            import obstore  # noqa: F401
        except ImportError:
            raise StoreUnavailableError(
                f"The result store '{self.url}' needs the object storage client obstore, "
                "which is not installed. Install it with: pip install 'jupyter-nbflow[s3]'."
            ) from None
        try:
            return self.cloud.connect(self.bucket, self.prefix, self.url)
        except StoreUnavailableError:
            raise
        except Exception as exc:  # a setting the client refuses (a malformed key, say)
            raise StoreUnavailableError(
                f"The result store '{self.url}' cannot be opened: {str(exc).splitlines()[0]}. "
                f"Check {self.cloud.credentials_fix()}."
            ) from exc

    def _count(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self.requests[kind] += n

    # -- checks and faults --------------------------------------------------------

    def check(self, *, again_after: float = 0.0) -> None:
        """Raise ``StoreUnavailableError`` (what happened, which store, the fix) unless
        the bucket answers; one small list request, skipped when the same client
        answered less than ``again_after`` seconds ago."""
        import time

        config = self._config()
        if time.monotonic() - _checked.get(config, -1e9) < again_after:
            return
        missing = self.cloud.missing_credentials(self.url)
        if missing is not None:
            raise StoreUnavailableError(missing)
        import obstore

        try:
            self._count("list")
            obstore.list(self.client, prefix="r/", chunk_size=1).collect()
        except StoreUnavailableError:
            raise
        except Exception as exc:
            _checked.pop(config, None)
            raise StoreUnavailableError(self._diagnose(exc)) from exc
        _checked[config] = time.monotonic()

    def _diagnose(self, exc: BaseException) -> str:
        text = str(exc)
        cloud = self.cloud
        server = cloud.server()
        short = text.splitlines()[0][:300] if text else type(exc).__name__
        word = cloud.bucket_word
        if any(w in text for w in cloud.missing_words):
            return (
                f"The result store '{self.url}' cannot be used: the {word} '{self.bucket}' "
                f"does not exist at {server}. Create it ({cloud.make_bucket(self.bucket)}) "
                f"or fix the {word} name in the URL (NBFLOW_STORE or store=...)."
            )
        if any(w in text for w in _REFUSED) or _REFUSED_STATUS.search(text):
            return (
                f"The result store '{self.url}' refused the credentials ({short}). Check "
                f"{cloud.credentials_fix()} and that they may list and write "
                f"{cloud.scheme}://{self.bucket}."
            )
        return (
            f"The result store '{self.url}' cannot be reached at {server} ({short}). Check "
            f"{cloud.server_fix()} and the network, or run without it: "
            "store=None (the local .nbflow folder)."
        )

    def _fail(self, what: str, exc: BaseException) -> None:
        with self._lock:
            if self.disabled is not None:
                return
            self.disabled = f"{type(exc).__name__}: {exc}"
            _checked.pop(self._config(), None)  # the next run checks before it starts
        warnings.warn(
            f"nbflow: the result store '{self.url}' failed while {what} "
            f"({str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}); "
            "the rest of this run uses the local tier only (its results are kept there).",
            RemoteStoreWarning,
            stacklevel=3,
        )

    def begin_run(self) -> None:
        """A run starts: read the keys afresh, try the store again, check it answers."""
        if not self.shipped:
            self.signer = settings.signing_key()
            self.trusted = settings.trusted_keys()
        if not self.trusted:
            raise StoreUnavailableError(
                f"The result store '{self.url}' needs a signing key: set NBFLOW_SIGNING_KEY "
                "to NAME:SECRET to write (and read your own entries), and NBFLOW_TRUSTED_KEYS "
                "to your team's NAME:SECRET,... to read theirs (see 'Results on object "
                "storage' in the README)."
            )
        self._refused = set()
        was_disabled, self.disabled = self.disabled, None
        self._client = None  # the variables may have changed since the last run
        self.check(again_after=0.0 if was_disabled else CHECK_AGAIN)

    # -- reading ------------------------------------------------------------------

    def _read(self, key: str) -> tuple[Any, str] | None:
        """(value, task) of ``key``, or None for a miss; raises for a failed request."""
        import obstore

        try:
            self._count("get")
            found = obstore.get(self.client, f"r/{key}")
            size = int(found.meta["size"])
            verifier: Verifier | None = None
            if size < STREAM_FROM:
                blob: Any = found.bytes()
            else:
                # Into writable memory as it arrives: arrays in the value are then
                # unpickled in place (the one copy the client would make anyway).
                # The signature is checked as the bytes arrive (hashing overlaps the
                # download), and an untrusted signer is refused at the first chunk.
                # The hashing of one chunk runs on its own thread (hashlib lets go of
                # the GIL) while the next chunk is received.
                buffer = bytearray(size)
                blob, at = memoryview(buffer), 0
                fed: Any = None  # the verifier's work on the bytes before this chunk
                try:
                    for chunk in found.stream(min_chunk_size=8 * 2**20):
                        blob[at : at + len(chunk)] = chunk
                        at += len(chunk)
                        if verifier is None:
                            verifier = Verifier(key, blob[:at], self.trusted)
                        if fed is not None:
                            fed.result()
                        fed = hashing().submit(verifier.feed, blob, at)
                    if fed is not None:
                        fed.result()
                except SignatureError as exc:
                    self._refuse(exc)
                    return None
                if at != size or verifier is None:
                    raise OSError(f"read {at} of the {size} bytes of entry '{key}'")
        except FileNotFoundError:
            return None
        try:
            if verifier is None:
                entry = unseal(key, memoryview(blob), self.trusted)
            else:
                entry = verifier.finish(blob)
        except SignatureError as exc:
            self._refuse(exc)
            return None
        try:
            # Out-of-band buffers are copied into writable memory, as an in-band pickle
            # would be: a result read back behaves like the one computed.
            buffers = [part if not part.readonly else bytearray(part) for part in entry.parts[1:]]
            return pickle.loads(entry.parts[0], buffers=buffers), entry.task
        except Exception as exc:  # a value whose classes are missing here, say
            warnings.warn(
                f"nbflow: the cached result '{key}' in '{self.url}' could not be read "
                f"({type(exc).__name__}: {exc}); it is recomputed.",
                CacheWarning,
                stacklevel=4,
            )
            return None

    def _refuse(self, exc: SignatureError) -> None:
        """An entry that must not be read is a miss, with one warning per kind and key."""
        with self._lock:
            first = (exc.kind, exc.signer) not in self._refused
            self._refused.add((exc.kind, exc.signer))
        if not first:
            log.debug("nbflow: %s in the result store '%s'; not read", exc, self.url)
            return
        more = "; further entries like it are misses without a warning in this run"
        warnings.warn(
            f"nbflow: {exc} in the result store '{self.url}'; it is not read (a miss"
            f"{more}). Add the writer's key to NBFLOW_TRUSTED_KEYS if you trust it.",
            UnsignedEntryWarning,
            stacklevel=5,
        )

    def entries(self, keys: list[str]) -> dict[str, tuple[Any, str]]:
        """(value, task) of those ``keys`` that are stored, read in parallel."""
        if self.disabled or not keys:
            return {}
        return {
            key: found
            for key, found in zip(keys, self._parallel(self._read, keys, "reading"), strict=True)
            if found is not None
        }

    def _parallel(self, call: Callable[[str], T], items: list[str], what: str) -> list[T | None]:
        def guarded(item: str) -> T | None:
            if self.disabled:
                return None
            try:
                return call(item)
            except Exception as exc:
                self._fail(what, exc)
                return None

        if len(items) == 1:
            return [guarded(items[0])]
        return list(_threads().map(guarded, items))

    def get(self, key: str, default: Any = None) -> Any:
        found = self.entries([key]).get(key)
        return default if found is None else found[0]

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        return {key: value for key, (value, _) in self.entries(keys).items()}

    def sizes(self, keys: list[str]) -> dict[str, int]:
        """For each of ``keys`` stored: its entry's size if it is large enough to be
        read where an executor's workers run (``FILE_THRESHOLD``), else 0. One HEAD
        request per key, in parallel; reads no value."""
        import obstore

        from nbflow.store.file import FILE_THRESHOLD

        def head(key: str) -> int | None:
            try:
                self._count("head")
                size = int(obstore.head(self.client, f"r/{key}")["size"])
            except FileNotFoundError:
                return None
            return size if size >= FILE_THRESHOLD else 0

        if self.disabled or not keys:
            return {}
        found = self._parallel(head, keys, "reading")
        return {key: size for key, size in zip(keys, found, strict=True) if size is not None}

    # -- writing ------------------------------------------------------------------

    def set(self, key: str, value: Any, *, task: str, expire: float | None = None) -> bool:
        """Keep ``value`` signed under ``key``; False when there is no signing key, the
        store failed or the value cannot be pickled (then a warning)."""
        if self.signer is None or expire is not None:
            return False
        if self.disabled:
            self._owe(key, task)
            return False
        buffers: list[pickle.PickleBuffer] = []
        try:
            # Protocol 5 with out-of-band buffers: a large array is signed and sent
            # from its own memory, never copied into the pickle.
            payload = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
            parts: list[Any] = [payload, *(b.raw() for b in buffers)]
        except Exception as exc:
            warnings.warn(
                f"Task '{task}' returned a {type(value).__name__} that cannot be pickled "
                f"({type(exc).__name__}: {exc}); it is not kept in '{self.url}'.",
                CacheWarning,
                stacklevel=2,
            )
            return False
        return self.put_parts(key, parts, task=task)

    def put_parts(self, key: str, parts: list[Any], *, task: str) -> bool:
        """Keep an already pickled value (the pickle, then its out-of-band buffers):
        the entry, then its task marker."""
        if self.signer is None:
            return False
        if self.disabled:
            self._owe(key, task)
            return False
        import obstore

        blob = seal(key, parts, task=task, signer=self.signer)
        signer = self.signer[0]
        small = sum(len(b) for b in blob) < STREAM_FROM
        # A small entry goes as one buffer (one request); a large one streams its
        # parts as they are.
        body: Any = b"".join(blob) if small else blob
        client = self.client

        def upload() -> bool:
            if self.disabled:
                self._owe(key, task)
                return False
            try:
                self._count("put", 2)
                obstore.put(client, f"r/{key}", body)
                obstore.put(client, _marker(task, signer, key), b"")
            except Exception as exc:
                self._fail("writing", exc)
                self._owe(key, task)
                return False
            return True

        if not small or self.shipped:
            # A large value is sent now, from its own memory; a worker's write must be
            # done when its attempt reports back.
            return upload()
        # A small one is sent in the background: a run of many small tasks does not
        # wait two requests per task (the local tier has the value already). flush()
        # waits for them; the run does at its end.
        future = _threads().submit(upload)
        with self._lock:
            self._uploads.add(future)
        future.add_done_callback(self._uploaded)
        return True

    def _owe(self, key: str, task: str) -> None:
        """``key`` could not be written because the store failed: the tier in front
        keeps it, and writes it here in a later run (``take_unsent``)."""
        with self._lock:
            self._unsent[key] = task

    def take_unsent(self) -> dict[str, str]:
        """The entries (key: task) this store failed to write since the last call."""
        with self._lock:
            found, self._unsent = self._unsent, {}
        return found

    def _uploaded(self, future: Any) -> None:
        with self._lock:
            self._uploads.discard(future)

    def flush(self) -> None:
        """Wait until the entries written so far are in the bucket (or failed)."""
        with self._lock:
            pending = list(self._uploads)
        for future in pending:
            future.result()

    # -- listing ------------------------------------------------------------------

    def _list(
        self,
        prefix: str,
        pages: int | None = None,
        low: str | None = None,
        high: str | None = None,
    ) -> Iterable[Any]:
        """The objects under ``prefix``, a page (one request) of up to 1,000 at a time:
        at most ``pages`` pages, of names after the prefix above ``low`` and at most
        ``high`` (None: no bound; object stores list in name order)."""
        import obstore

        offset: Any = {"offset": prefix + low} if low is not None else {}
        self._count("list")
        listed = obstore.list(self.client, prefix=prefix, chunk_size=1000, **offset)
        for n, chunk in enumerate(listed):
            if n:
                self._count("list")  # the next page
            for meta in chunk:
                if high is not None and meta["path"] > prefix + high:
                    return
                yield meta
            if pages is not None and n + 1 >= pages:
                return

    def present(self, keys: list[str], tasks: Iterable[str]) -> tuple[frozenset[str], bool]:
        """Those of ``keys`` (results of ``tasks``) whose entries are signed by a
        trusted key, found from the tasks' markers without reading an entry: one
        listing per task, in parallel, of about ``len(keys) / PARALLEL`` pages in all
        (what reading each key would cost). Also whether the answer is complete: False
        when a listing stopped there, or failed.

        An entry is still checked when it is read (a marker does not prove the
        signature), and a read that is refused is a miss, computed again."""
        names = sorted(set(tasks))
        if self.disabled or not keys or not names:
            return frozenset(), False
        wanted = set(keys)
        budget = max(2, len(keys) // PARALLEL // len(names) + 1)
        trusted = self.trusted

        def listed(task: str) -> tuple[set[str], bool]:
            found: set[str] = set()
            seen, complete = 0, True
            for meta in self._list(f"t/{_quote(task)}/", pages=budget):
                seen += 1
                _, signer, key = _parse_marker(meta["path"])
                if key not in wanted:
                    continue
                if signer in trusted:
                    found.add(key)
                elif signer is None:  # an older marker: the entry is looked up when due
                    complete = False
                else:  # said once per signer, as a read of the entry would
                    self._refuse(
                        SignatureError(
                            f"entry '{key}' is signed by key '{signer}', which is not trusted",
                            "untrusted",
                            signer,
                        )
                    )
            return found, complete and seen < budget * 1000

        results = self._parallel(listed, names, "listing")
        found = frozenset().union(*(r[0] for r in results if r is not None))
        complete = not self.disabled and all(r is not None and r[1] for r in results)
        return found, complete

    def listing(self) -> list[dict[str, Any]]:
        """Every entry: ``key``, ``task``, ``size`` (bytes), ``created`` (Unix time) and
        its ``markers`` (paths)."""
        import obstore

        self._count("list")
        folders = obstore.list_with_delimiter(self.client, prefix="t/")["common_prefixes"]
        # Entries in 16 ranges of their (hex) keys, markers by task: listed at once.
        ranges = _RANGES if self.cloud.lists_from_offset else [(None, None)]
        jobs = [("r/", low, high) for low, high in ranges] + [
            (f"{f}/", None, None) for f in folders
        ]
        parts = list(
            _threads().map(lambda job: list(self._list(job[0], low=job[1], high=job[2])), jobs)
        )
        tasks: dict[str, str] = {}
        markers: dict[str, list[str]] = {}
        for part in parts[len(ranges) :]:
            for meta in part:
                task, _, key = _parse_marker(meta["path"])
                tasks[key] = task
                markers.setdefault(key, []).append(meta["path"])
        return [
            {
                "key": key,
                "task": tasks.get(key, "?"),
                "size": int(meta["size"]),
                "created": meta["last_modified"].timestamp(),
                "markers": markers.get(key, []),
            }
            for part in parts[: len(ranges)]
            for meta in part
            for key in [meta["path"].rsplit("/", 1)[-1]]
        ]

    def info(self) -> dict[str, Any]:
        """Entries, bytes, entries per task, and the oldest and newest creation times."""
        self.check()  # a clear error rather than a failed listing
        # The lengths of lists kept beside their entries are not entries.
        rows = [row for row in self.listing() if not row["key"].endswith(":len")]
        per_task: dict[str, int] = {}
        for row in rows:
            per_task[row["task"]] = per_task.get(row["task"], 0) + 1
        created = [row["created"] for row in rows]
        return {
            "path": self.url,
            "entries": len(rows),
            "bytes": sum(row["size"] for row in rows),
            "per_task": per_task,
            "oldest": min(created, default=None),
            "newest": max(created, default=None),
        }

    def clear(self, task: str | None = None, older_than: float | None = None) -> int:
        """Remove entries (of one task, and/or created more than ``older_than`` s ago)."""
        import time

        self.check()  # a clear error rather than a failed listing
        now = time.time()
        chosen = [
            row
            for row in self.listing()
            if (task is None or row["task"] == task)
            and (older_than is None or row["created"] < now - older_than)
        ]
        self._delete(
            [f"r/{row['key']}" for row in chosen] + [m for r in chosen for m in r["markers"]]
        )
        return len(chosen)

    def delete(self, key: str) -> None:
        """Remove the entry of ``key`` and its markers."""
        markers = [m["path"] for m in self._list("t/") if m["path"].rsplit("/", 1)[-1] == key]
        self._delete([f"r/{key}", *markers])

    def _delete(self, paths: list[str]) -> None:
        if not paths:
            return
        import obstore

        try:
            for start in range(0, len(paths), 1000):  # the most one request deletes
                self._count("delete")
                obstore.delete(self.client, paths[start : start + 1000])
        except Exception as exc:
            raise StoreUnavailableError(
                f"Could not delete entries from the result store '{self.url}' "
                f"({str(exc).splitlines()[0][:300]}). Check that the credentials may delete "
                f"in {self.cloud.scheme}://{self.bucket}."
            ) from exc


def open_remote_store(url: str) -> Any:
    """The ``s3://``, ``gs://`` or ``az://`` store: the home folder's file store in front
    of the bucket (``TieredStore``)."""
    from nbflow.store.file import open_file_store
    from nbflow.store.tiered import TieredStore

    return TieredStore(open_file_store(None), RemoteStore(url))


__all__ = [
    "RemoteStore",
    "RemoteStoreWarning",
    "StoreUnavailableError",
    "UnsignedEntryWarning",
    "open_remote_store",
    "parse_url",
]
