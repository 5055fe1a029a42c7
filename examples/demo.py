"""nbflow demo: retries, mapping, a skipped branch, and a cached second run.

Run with `make demo`. Everything happens in a temporary directory except the
cache, which lives in ./.nbflow so that a second `make demo` is cached too.
"""

from __future__ import annotations

import os
import pathlib
import random
import tempfile
import time

from nbflow import SKIP, Flow, State, task, unmapped
from nbflow.palette import ICONS

WORKDIR = pathlib.Path(tempfile.mkdtemp(prefix="nbflow-demo-"))
# A fresh store each time, so every demo shows the retries and then the cache at work.
os.environ.setdefault("NBFLOW_HOME", str(WORKDIR / "store"))


@task(retries=2, retry_delay=0.2)
def download(source: str) -> list[int]:
    """Flaky: fails on its first attempt, as networks do."""
    marker = WORKDIR / f"{source}.tried"
    if not marker.exists():
        marker.touch()
        raise ConnectionError(f"{source}: connection reset by peer")
    rng = random.Random(source)
    print(f"downloaded {source}")
    return [rng.randint(1, 100) for _ in range(5)]


@task
def clean(values: list[int], limit: int) -> list[int]:
    time.sleep(0.1)
    return [v for v in values if v <= limit]


@task
def summarise(batches: list[list[int]]) -> dict[str, float]:
    flat = [v for batch in batches for v in batch]
    return {"n": len(flat), "mean": round(sum(flat) / len(flat), 2)}


@task
def publish(summary: dict[str, float], dry_run: bool) -> str:
    if dry_run:
        raise SKIP("dry run: nothing published")
    return "published"


def progress(event) -> None:
    if event.kind == "task_state" and event.state is not State.PENDING:
        run = event.task_run
        took = (
            f" {run.duration:.2f}s" if run.duration is not None and event.state.is_finished else ""
        )
        extra = f" (attempt {run.attempts})" if run.attempts > 1 and not run.mapped else ""
        print(f"  {ICONS[event.state]} {run.name:<14} {event.state.value}{extra}{took}")


def main() -> None:
    with Flow("demo") as flow:
        raw = download.map(["north", "south", "east"])
        kept = clean.map(raw, limit=unmapped(80))
        summary = summarise(kept)
        published = publish(summary, dry_run=True)

    for attempt, what in ((1, "computes, retrying the flaky downloads"), (2, "from the cache")):
        print(f"\n== run {attempt}: {what} ==")
        run = flow.run(executor="threads", listeners=[progress])
        print(run)
        print(f"summary:   {run.result(summary)}")
        print(f"published: {run.result(published)!r} ({run[published].reason})")
        table = run.to_pandas()[["name", "state", "attempts", "cached", "duration"]]
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
