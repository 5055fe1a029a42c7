"""Results on S3-compatible object storage: ``s3://bucket/prefix``.

``open_s3_store(url)`` (the opener of the ``s3`` scheme) gives a ``TieredStore``: the
local file store (the home folder) in front of an ``S3ResultStore``. The client is
configured the standard way: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (or
``AWS_PROFILE`` and the ``~/.aws`` files, read with boto3 when it is installed),
``AWS_REGION``/``AWS_DEFAULT_REGION``, and ``AWS_ENDPOINT_URL`` for an S3-compatible
server.

The client is obstore (Rust, ``object_store``), imported on first use. Measured over
loopback against a moto server on this project's machines: a small object's put/get
took about 5 ms with obstore and 16/28 ms with s3fs, a 100 MB get 0.6 s against 2.3 s;
s3fs also pulls in aiobotocore.

Layout under the prefix: ``r/<cache key>`` holds a signed entry (``signing.py``),
``t/<task>/<cache key>`` is an empty marker that lets ``info`` and ``clear`` count and
select entries per task without reading them. An entry's size and creation time are
the object's. Results of tasks with ``cache_expire`` stay in the local tier only (an
object has no expiry of its own).
"""

from __future__ import annotations

import configparser
import logging
import os
import pathlib
import pickle
import re
import threading
import urllib.parse
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

from nbflow import settings
from nbflow.errors import NbflowError
from nbflow.store.file import CacheWarning
from nbflow.store.signing import SignatureError, Verifier, seal, unseal

log = logging.getLogger("nbflow")

T = TypeVar("T")

_MISS: Any = object()
# Requests in flight at once when many keys are read (a step's cache hits): the server,
# not this process, is what waits, so more threads than cores pay off.
PARALLEL = 32
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
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
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="nbflow-s3")
        return _pool


class StoreUnavailableError(NbflowError):
    """A remote result store cannot be used: the message says which and how to fix it."""


class RemoteStoreWarning(CacheWarning):
    """A remote store failed during a run; the run goes on with the local tier."""


class UnsignedEntryWarning(CacheWarning):
    """A remote entry was not read: unsigned, damaged or signed by an untrusted key."""


_URL = re.compile(r"^s3://([^/?#]+)/?([^?#]*)$", re.IGNORECASE)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def parse_url(url: str) -> tuple[str, str]:
    """The bucket and prefix (no trailing slash) of ``s3://bucket/prefix``.

    >>> parse_url("s3://team-results/projects/churn/")
    ('team-results', 'projects/churn')
    """
    match = _URL.match(url.strip())
    if match is None or not _BUCKET.match(match.group(1)):
        raise NbflowError(
            f"Cannot open the result store '{url}': expected s3://BUCKET/PREFIX, with a bucket "
            "name of 3-63 lowercase letters, digits, '.' or '-' (e.g. s3://team-results/churn)."
        )
    return match.group(1), match.group(2).strip("/")


def _quote(task: str) -> str:
    return urllib.parse.quote(task, safe="")


def _has_credentials() -> bool:
    """Whether the standard AWS places name credentials (no request is made)."""
    env = os.environ
    if env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        return True
    if env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or env.get(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI"
    ):
        return True
    return _profile_file() is not None


def _profile_file() -> pathlib.Path | None:
    """The shared credentials or config file that names this profile's keys, if any."""
    profile = os.environ.get("AWS_PROFILE") or "default"
    named = "default" if profile == "default" else f"profile {profile}"
    for var, default, section in (
        ("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials", profile),
        ("AWS_CONFIG_FILE", "~/.aws/config", named),
    ):
        path = pathlib.Path(os.environ.get(var) or default).expanduser()
        parser = configparser.ConfigParser()
        try:
            parser.read(path)
        except configparser.Error:
            continue
        if parser.has_option(section, "aws_access_key_id") or parser.has_option(
            section, "sso_session"
        ):
            return path
    return None


class S3ResultStore:
    """Signed task results in an S3 bucket, by cache key (the remote tier).

    Reads only entries signed by a trusted key (``NBFLOW_TRUSTED_KEYS`` and the
    writer's own ``NBFLOW_SIGNING_KEY``); writes only with a signing key. A request
    that fails during a run turns the store off for the rest of the run with one
    ``RemoteStoreWarning``; ``begin_run`` checks it can be used and raises
    ``StoreUnavailableError`` naming the store and the fix when it cannot.
    """

    def __init__(self, url: str) -> None:
        self.bucket, self.prefix = parse_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
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

    def __getstate__(self) -> dict[str, Any]:
        if self.shipped:
            return {"url": self.url, "keys": (self.signer, self.trusted)}
        return {"url": self.url}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"])  # type: ignore[misc]
        if "keys" in state:
            self.signer, self.trusted = state["keys"]
            self.shipped = True

    def for_workers(self) -> S3ResultStore:
        """This store as an executor's workers use it: it pickles with this process's
        signing and trusted keys, so workers sign and check entries as this run does
        (their own environment supplies the AWS credentials)."""
        copy = S3ResultStore(self.url)
        copy.signer, copy.trusted, copy.shipped = self.signer, self.trusted, True
        return copy

    def __repr__(self) -> str:
        return f"S3ResultStore('{self.url}')"

    # -- the client ---------------------------------------------------------------

    def _config(self) -> tuple[str | None, ...]:
        env = os.environ
        names = (
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
        )
        return (self.bucket, self.prefix, *(env.get(name) for name in names))

    @property
    def client(self) -> Any:
        if self._client is None:
            config = self._config()
            with self._lock, _pool_lock:
                if self._client is None:
                    client = _clients.get(config)
                    if client is None:
                        client = _clients[config] = self._connect()
                    self._client = client
        return self._client

    def _connect(self) -> Any:
        try:
            from obstore.store import S3Store
        except ImportError:
            raise StoreUnavailableError(
                f"The result store '{self.url}' needs the S3 client obstore, which is not "
                "installed. Install it with: pip install 'nbflow[s3]'."
            ) from None
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        options: Any = {"connect_timeout": "5s", "timeout": "600s"}
        if endpoint and endpoint.lower().startswith("http://"):
            options["allow_http"] = True  # a local S3-compatible server (MinIO, moto)
        kwargs: dict[str, Any] = {}
        if endpoint:
            kwargs["endpoint"] = endpoint
        if not os.environ.get("AWS_ACCESS_KEY_ID") and _profile_file() is not None:
            kwargs.update(self._profile_credentials())
        return S3Store(
            self.bucket,
            prefix=self.prefix or None,
            client_options=options,
            retry_config={
                "max_retries": 2,
                "retry_timeout": timedelta(seconds=10),
                "backoff": {
                    "init_backoff": timedelta(milliseconds=100),
                    "max_backoff": timedelta(seconds=2),
                    "base": 2,
                },
            },
            **kwargs,
        )

    def _profile_credentials(self) -> dict[str, Any]:
        # obstore reads the AWS_* variables itself; the ~/.aws files need boto3.
        try:
            import boto3
            from obstore.auth.boto3 import Boto3CredentialProvider
        except ImportError:
            raise StoreUnavailableError(
                f"The result store '{self.url}' has credentials only in the ~/.aws files, "
                "which are read with boto3. Install it (pip install boto3) or set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."
            ) from None
        session = boto3.Session()
        found: dict[str, Any] = {"credential_provider": Boto3CredentialProvider(session)}
        if session.region_name and not (
            os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        ):
            found["region"] = session.region_name
        return found

    # -- checks and faults --------------------------------------------------------

    def check(self, *, again_after: float = 0.0) -> None:
        """Raise ``StoreUnavailableError`` (what happened, which store, the fix) unless
        the bucket answers; one small list request, skipped when the same client
        answered less than ``again_after`` seconds ago."""
        import time

        config = self._config()
        if time.monotonic() - _checked.get(config, -1e9) < again_after:
            return
        if not _has_credentials():
            raise StoreUnavailableError(
                f"The result store '{self.url}' has no credentials: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE with ~/.aws/credentials), and "
                "AWS_ENDPOINT_URL for a server other than AWS."
            )
        import obstore

        try:
            obstore.list(self.client, prefix="r/", chunk_size=1).collect()
        except StoreUnavailableError:
            raise
        except Exception as exc:
            _checked.pop(config, None)
            raise StoreUnavailableError(self._diagnose(exc)) from exc
        _checked[config] = time.monotonic()

    def _diagnose(self, exc: BaseException) -> str:
        text = str(exc)
        where = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        server = f"the endpoint {where}" if where else "AWS S3"
        short = text.splitlines()[0][:300] if text else type(exc).__name__
        if "NoSuchBucket" in text:
            return (
                f"The result store '{self.url}' cannot be used: the bucket '{self.bucket}' does "
                f"not exist at {server}. Create it (aws s3 mb s3://{self.bucket}) or fix the "
                "bucket name in the URL (NBFLOW_STORE or store=...)."
            )
        if any(
            word in text
            for word in (
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "AccessDenied",
                "credential",
                "Forbidden",
                "403",
            )
        ):
            return (
                f"The result store '{self.url}' refused the credentials ({short}). Check "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and that they may "
                f"list and write s3://{self.bucket}."
            )
        return (
            f"The result store '{self.url}' cannot be reached at {server} ({short}). Check "
            "AWS_ENDPOINT_URL and AWS_REGION and the network, or run without it: "
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
                buffer = bytearray(size)
                blob, at = memoryview(buffer), 0
                try:
                    for chunk in found.stream(min_chunk_size=8 * 2**20):
                        blob[at : at + len(chunk)] = chunk
                        at += len(chunk)
                        if verifier is None:
                            verifier = Verifier(key, blob[:at], self.trusted)
                        verifier.feed(blob, at)
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
        if self.disabled or self.signer is None or expire is not None:
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
        if self.disabled or self.signer is None:
            return False
        import obstore

        blob = seal(key, parts, task=task, signer=self.signer)
        small = sum(len(b) for b in blob) < STREAM_FROM
        # A small entry goes as one buffer (one request); a large one streams its
        # parts as they are.
        body: Any = b"".join(blob) if small else blob
        client = self.client

        def upload() -> bool:
            if self.disabled:
                return False
            try:
                obstore.put(client, f"r/{key}", body)
                obstore.put(client, f"t/{_quote(task)}/{key}", b"")
            except Exception as exc:
                self._fail("writing", exc)
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

    def _uploaded(self, future: Any) -> None:
        with self._lock:
            self._uploads.discard(future)

    def flush(self) -> None:
        """Wait until the entries written so far are in the bucket (or failed)."""
        with self._lock:
            pending = list(self._uploads)
        for future in pending:
            future.result()

    def delete(self, key: str) -> None:
        self._delete_keys([key])

    # -- listing ------------------------------------------------------------------

    def _list(self, prefix: str) -> Iterable[Any]:
        import obstore

        for chunk in obstore.list(self.client, prefix=prefix, chunk_size=1000):
            yield from chunk

    def listing(self) -> list[dict[str, Any]]:
        """Every entry: ``key``, ``task``, ``size`` (bytes) and ``created`` (Unix time)."""
        tasks: dict[str, str] = {}
        for meta in self._list("t/"):
            _, task, key = meta["path"].rsplit("/", 2)
            tasks[key] = urllib.parse.unquote(task)
        return [
            {
                "key": key,
                "task": tasks.get(key, "?"),
                "size": int(meta["size"]),
                "created": meta["last_modified"].timestamp(),
            }
            for meta in self._list("r/")
            for key in [meta["path"].rsplit("/", 1)[-1]]
        ]

    def info(self) -> dict[str, Any]:
        """Entries, bytes, entries per task, and the oldest and newest creation times."""
        self.check()  # a clear error rather than a failed listing
        rows = self.listing()
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
        self._delete_keys([row["key"] for row in chosen], {r["key"]: r["task"] for r in chosen})
        return len(chosen)

    def _delete_keys(self, keys: list[str], tasks: dict[str, str] | None = None) -> None:
        if not keys:
            return
        import obstore

        if tasks is None:
            wanted = set(keys)
            tasks = {}
            for meta in self._list("t/"):
                _, task, key = meta["path"].rsplit("/", 2)
                if key in wanted:
                    tasks[key] = urllib.parse.unquote(task)
        paths = [f"r/{k}" for k in keys] + [f"t/{_quote(t)}/{k}" for k, t in tasks.items()]
        try:
            for start in range(0, len(paths), 1000):  # the most one request deletes
                obstore.delete(self.client, paths[start : start + 1000])
        except Exception as exc:
            raise StoreUnavailableError(
                f"Could not delete entries from the result store '{self.url}' "
                f"({str(exc).splitlines()[0][:300]}). Check that the credentials may delete "
                f"in s3://{self.bucket}."
            ) from exc


def open_s3_store(url: str) -> Any:
    """The ``s3://bucket/prefix`` store: the home folder's file store in front of the
    bucket (``TieredStore``)."""
    from nbflow.store.file import open_file_store
    from nbflow.store.tiered import TieredStore

    return TieredStore(open_file_store(None), S3ResultStore(url))


__all__ = [
    "RemoteStoreWarning",
    "S3ResultStore",
    "StoreUnavailableError",
    "UnsignedEntryWarning",
    "open_s3_store",
    "parse_url",
]
