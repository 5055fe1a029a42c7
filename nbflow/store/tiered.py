"""A local store in front of a remote one: read-through, write to both.

A local hit is answered at once; a local miss asks the remote, and a remote hit is
kept locally so the next read is local. A write goes to the local tier, then the
remote. When the remote fails during a run (it warns once and turns itself off) the
run goes on with the local tier, which keeps everything the run finishes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import threading
from collections.abc import Iterable
from typing import Any

from nbflow.store.file import FileStore, open_file_store
from nbflow.store.remote import RemoteStore

log = logging.getLogger("nbflow")

_MISS: Any = object()


class TieredStore:
    """``local`` (a file store) in front of ``remote`` (a bucket)."""

    def __init__(self, local: FileStore, remote: RemoteStore) -> None:
        self.local = local
        self.remote = remote
        # Whether the last ``present`` left out only keys neither tier has.
        self.present_is_complete = False

    @property
    def path(self) -> pathlib.Path:
        """The local tier's folder (the inbox of paused tasks is polled there)."""
        return self.local.path

    @property
    def url(self) -> str:
        return self.remote.url

    def __getstate__(self) -> dict[str, Any]:
        return {"local": str(self.local.path), "remote": self.remote.url}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(open_file_store(state["local"]), RemoteStore(state["remote"]))  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"TieredStore('{self.local.path}' in front of '{self.remote.url}')"

    def get(self, key: str, default: Any = None) -> Any:
        value = self.local.get(key, _MISS)
        if value is not _MISS:
            return value
        return self._pull([key]).get(key, default)

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        found = self.local.get_many(keys)
        missing = [k for k in keys if k not in found]
        if missing:
            found.update(self._pull(missing))
        return found

    def _pull(self, keys: list[str]) -> dict[str, Any]:
        """The remote hits among ``keys``, now kept in the local tier as well."""
        entries = self.remote.entries(keys)
        if not entries:
            return {}
        # One local transaction for the whole batch: a cold local tier takes a step's
        # hits in one commit instead of one per key.
        try:
            with self.local.cache.transact(retry=True):
                for key, (value, task) in entries.items():
                    self.local.set(key, value, task=task)
        except Exception:  # the local tier is full or read-only: the values still count
            log.debug("nbflow: could not keep remote hits locally", exc_info=True)
        return {key: value for key, (value, _) in entries.items()}

    def sizes(self, keys: list[str]) -> dict[str, int]:
        """Sizes in the local tier, and in the remote for what only it has: a large
        remote value is then read by the executor's worker that needs it
        (``worker_store``), never by this process."""
        found = self.local.sizes(keys)
        missing = [k for k in keys if k not in found]
        if missing:
            found.update(self.remote.sizes(missing))
        return found

    def present(self, keys: list[str], tasks: Iterable[str] = ()) -> set[str]:
        """Those of ``keys`` (results of ``tasks``) in the local tier, or in the bucket
        signed by a trusted key (by its markers: one listing per task, no entry read).
        A bucket entry settled this way is read, and its signature checked, when its
        value is needed; one that fails the check is a miss then, computed again."""
        found = self.local.present(keys)
        missing = [k for k in keys if k not in found]
        if not missing:
            self.present_is_complete = True
            return found
        listed, self.present_is_complete = self.remote.present(missing, tasks)
        return found | listed

    def worker_store(self) -> RemoteStore:
        """What an executor's workers read and write themselves: the remote tier (a
        worker may run on a machine without this one's local folder)."""
        return self.remote.for_workers()

    def set(self, key: str, value: Any, *, task: str, expire: float | None = None) -> bool:
        kept = self.local.set(key, value, task=task, expire=expire)
        shared = self.remote.set(key, value, task=task, expire=expire)
        return kept or shared

    def flush(self) -> None:
        """Wait until the results written so far are in the bucket; those it failed to
        take are noted in the local tier, for a later run to write."""
        self.remote.flush()
        owed = self.remote.take_unsent()
        if owed:
            try:
                with open(self._owed_file(), "a", encoding="utf-8") as fh:
                    fh.writelines(json.dumps([k, t]) + "\n" for k, t in owed.items())
            except OSError:
                log.debug("nbflow: could not note the results owed to %s", self.url, exc_info=True)

    def begin_run(self) -> None:
        """Both tiers start a run; the remote checks it answers (raising if not), then
        is given the results an earlier run kept only locally when it failed (in the
        background: the run's end waits for them)."""
        self.local.begin_run()
        self.remote.begin_run()
        self._repay()

    def _owed_file(self) -> pathlib.Path:
        digest = hashlib.sha256(self.remote.url.encode()).hexdigest()[:16]
        return self.local.path / f"remote-owed-{digest}.jsonl"

    def _repay(self) -> None:
        """Write to the bucket the results noted as owed to it. The note is taken first
        (renamed), so two runs never both write them; what fails again is noted again."""
        path = self._owed_file()
        taken = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            os.replace(path, taken)
        except OSError:
            return  # nothing owed
        try:
            owed = dict(json.loads(line) for line in taken.read_text("utf-8").splitlines() if line)
        except (OSError, ValueError):
            owed = {}
        log.info("nbflow: writing %d results kept locally to %s", len(owed), self.url)
        for key, task in owed.items():  # one value in memory at a time
            value = self.local.get(key, _MISS)
            if value is not _MISS:
                self.remote.set(key, value, task=task)
        taken.unlink(missing_ok=True)

    def delete(self, key: str) -> None:
        self.local.delete(key)
        self.remote.delete(key)

    def info(self) -> dict[str, Any]:
        """The remote's entries, bytes, per task and ages, with the local tier's under
        ``local``."""
        found = self.remote.info()
        found["local"] = self.local.info()
        return found

    def clear(self, task: str | None = None, older_than: float | None = None) -> int:
        """Remove entries from both tiers; how many the remote had."""
        self.local.clear(task=task, older_than=older_than)
        return self.remote.clear(task=task, older_than=older_than)


__all__ = ["TieredStore"]
