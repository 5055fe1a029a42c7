"""Cache keys: what a task's fingerprint covers, how values hash, and that a key never
hashes an upstream value.

Fingerprints read source with ``inspect.getsource``, so each version of a module is a
real file in ``tmp_path``, imported under a name of its own.
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbflow import Flow, State, task
from nbflow.graph.hashing import Unhashable, fingerprint, hash_value

_imported = itertools.count()


def _import(path: Path, source: str, name: str | None = None):
    """Write ``source`` to ``path`` and import it (under ``name``, default a new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    name = name or f"_nbflow_hash_test_{path.stem}_{next(_imported)}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# -- fingerprints --------------------------------------------------------------------

TASKS = textwrap.dedent(
    """
    import json

    LIMIT = 10


    def inner(x):
        return x % 7


    def helper(x):
        return inner(x) * 2


    def unused(x):
        return x - 1


    def compute(x, scale=3):
        total = helper(x) + scale
        return json.dumps(min(total, LIMIT))
    """
)

COSMETIC = textwrap.dedent(
    '''
    """The same code, written differently."""
    import json

    LIMIT = 10  # the most we report


    def inner(x):
        """Wrap around a week."""
        return x%7


    def helper(x):
        # Twice the remainder.
        return (inner(x)
                * 2)


    def unused(x):
        return x - 1


    def compute(x, scale = 3):
        """Compute a capped, JSON-encoded total.

        Longer docstrings do not count either.
        """

        total = helper(x) + scale  # a trailing comment
        return json.dumps(
            min(total, LIMIT),
        )
    '''
)


def _fingerprint_of(tmp_path: Path, source: str, version: str | None = None) -> str:
    module = _import(tmp_path / f"tasks_{next(_imported)}.py", source)
    return fingerprint(module.compute, version)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param("total = helper(x) + scale", "total = helper(x) - scale", id="task-body"),
        pytest.param("return inner(x) * 2", "return inner(x) * 3", id="helper"),
        pytest.param("return x % 7", "return x % 5", id="helper-of-helper"),
        pytest.param("LIMIT = 10", "LIMIT = 11", id="module-constant"),
        pytest.param("scale=3", "scale=4", id="default-argument"),
    ],
)
def test_fingerprint_changes_when_what_the_task_computes_changes(tmp_path, old, new):
    assert TASKS.count(old) == 1
    before = _fingerprint_of(tmp_path, TASKS)
    assert _fingerprint_of(tmp_path, TASKS) == before  # a reload alone changes nothing
    assert _fingerprint_of(tmp_path, TASKS.replace(old, new)) != before


def test_fingerprint_ignores_comments_docstrings_and_formatting(tmp_path):
    assert _fingerprint_of(tmp_path, COSMETIC) == _fingerprint_of(tmp_path, TASKS)


def test_fingerprint_ignores_functions_the_task_does_not_use(tmp_path):
    edited = TASKS.replace("return x - 1", "return x - 2")
    assert _fingerprint_of(tmp_path, edited) == _fingerprint_of(tmp_path, TASKS)


def test_fingerprint_changes_with_cache_version(tmp_path):
    fps = {_fingerprint_of(tmp_path, TASKS, v) for v in (None, "1", "2")}
    assert len(fps) == 3
    assert _fingerprint_of(tmp_path, TASKS, "1") in fps


def test_fingerprint_of_mutually_recursive_helpers_ends_and_follows_both(tmp_path):
    source = """
        def even(n):
            return True if n == 0 else odd(n - 1)


        def odd(n):
            return False if n == 0 else even(n - 1)


        def compute(n):
            return even(n)
        """
    before = _fingerprint_of(tmp_path, source)
    assert _fingerprint_of(tmp_path, source.replace("False if", "bool(0) if")) != before


@pytest.mark.parametrize(
    ("folder", "followed"),
    [("site-packages", False), ("my-project", True)],
    ids=["installed-library", "project-module"],
)
def test_fingerprint_follows_functions_of_the_project_but_not_of_installed_packages(
    tmp_path, folder, followed
):
    # Two versions of a helper module, identical but for the helper's body; the task
    # module that imports it is the same text each time.
    fps = []
    lib = f"_nbflow_hash_lib_{next(_imported)}"  # one module name, as after a restart
    for version, body in enumerate(["x + 1", "x + 2"]):
        _import(
            tmp_path / f"v{version}" / folder / "lib.py", f"def clean(x):\n    return {body}\n", lib
        )
        user = _import(
            tmp_path / f"user_{version}.py",
            f"from {lib} import clean\n\n\ndef compute(x):\n    return clean(x)\n",
        )
        assert user.compute(1) == 2 + version
        fps.append(fingerprint(user.compute))
    assert (fps[0] != fps[1]) is followed


def test_fingerprint_follows_a_project_helper_called_through_its_module(tmp_path):
    # 'import utils; utils.clean(x)' is as common as 'from utils import clean'. An edit
    # of clean must invalidate the task either way, or a re-run returns stale results.
    fps = []
    lib = f"_nbflow_hash_utils_{next(_imported)}"  # one module name, as after a restart
    for version, body in enumerate(["x + 1", "x + 2"]):
        _import(tmp_path / f"v{version}" / "utils.py", f"def clean(x):\n    return {body}\n", lib)
        user = _import(
            tmp_path / f"user_{version}.py",
            f"import {lib} as utils\n\n\ndef compute(x):\n    return utils.clean(x)\n",
        )
        assert user.compute(1) == 2 + version
        fps.append(fingerprint(user.compute))
    assert fps[0] != fps[1]


def test_fingerprint_names_a_standard_library_function_without_reading_it(tmp_path):
    def calling(module: str) -> str:
        user = _import(
            tmp_path / f"calls_{next(_imported)}.py",
            f"from {module} import dumps\n\n\ndef compute(x):\n    return dumps(x)\n",
        )
        return fingerprint(user.compute)

    assert calling("json") == calling("json")
    assert calling("json") != calling("pickle")  # the same name from elsewhere


def test_fingerprint_counts_closure_values():
    def make(offset):
        def shifted(x):
            return x + offset

        return shifted

    assert fingerprint(make(1)) == fingerprint(make(1))
    assert fingerprint(make(1)) != fingerprint(make(2))
    assert fingerprint(make([1, 2])) != fingerprint(make([1, 3]))


def test_fingerprint_counts_module_constants_of_any_hashable_kind(tmp_path):
    source = """
        import numpy as np

        WEIGHTS = np.array([0.5, 0.25, 0.25])


        def compute(x):
            return float(WEIGHTS @ x)
        """
    before = _fingerprint_of(tmp_path, source)
    module = _import(tmp_path / "weights.py", source)
    assert fingerprint(module.compute) == before
    module.WEIGHTS[0] = 0.4  # changed in place, as a notebook cell might
    assert fingerprint(module.compute) != before


def test_fingerprint_of_a_function_reading_an_unhashable_global_raises_unhashable(tmp_path):
    module = _import(
        tmp_path / "locked.py",
        """
        import threading

        LOCK = threading.Lock()


        def compute(x):
            with LOCK:
                return x
        """,
    )
    with pytest.raises(Unhashable) as info:
        fingerprint(module.compute)
    assert info.value.what == "global 'LOCK'"
    assert info.value.type_name == "lock"


# -- values --------------------------------------------------------------------------


def _nested() -> dict:
    return {"name": "run", "sizes": [1, 2, 3], "opts": {"depth": 2.5, "tags": ("a", "b")}}


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(_nested, id="small-plain"),
        pytest.param(lambda: {f"k{i}": [i, str(i)] for i in range(300)}, id="large-dict"),
        pytest.param(lambda: list(range(1000)), id="large-list"),
        pytest.param(lambda: [{1, 2}, b"bytes", None, 3 + 4j], id="mixed"),
    ],
)
def test_hash_value_is_the_same_for_equal_values_built_separately(make):
    a, b = make(), make()
    assert a == b
    assert a is not b
    assert hash_value(a) == hash_value(b) == hash_value(copy.deepcopy(a))
    assert isinstance(hash_value(a), str)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(_nested(), {**_nested(), "sizes": [1, 2, 4]}, id="nested-element"),
        pytest.param([1, 2, 3], [1, 2], id="list-length"),
        pytest.param([1, 2], (1, 2), id="list-vs-tuple"),
        pytest.param("1", 1, id="str-vs-int"),
        pytest.param(list(range(1000)), [*range(999), -1], id="large-list-last-element"),
        pytest.param(
            {f"k{i}": i for i in range(300)},
            {**{f"k{i}": i for i in range(300)}, "k150": -1},
            id="large-dict-one-value",
        ),
    ],
)
def test_hash_value_differs_for_different_values(a, b):
    assert hash_value(a) != hash_value(b)


def test_hash_value_of_numpy_arrays_changes_with_one_element_and_with_dtype():
    a = np.arange(200_000, dtype=np.float64)
    b = a.copy()
    assert hash_value(a) == hash_value(b)
    b[123_456] += 1e-9
    assert hash_value(a) != hash_value(b)
    assert hash_value(np.arange(10)) != hash_value(np.arange(10, dtype=np.float64))
    assert hash_value(a.reshape(400, 500)) != hash_value(a.reshape(500, 400))


def test_hash_value_of_dataframes_changes_with_one_cell_and_with_a_column_name():
    df = pd.DataFrame({"x": np.arange(10_000), "y": np.linspace(0, 1, 10_000), "s": "k"})
    same = df.copy()
    assert hash_value(df) == hash_value(same)
    changed = df.copy()
    changed.loc[5_000, "y"] = -1.0
    assert hash_value(changed) != hash_value(df)
    changed = df.copy()
    changed.loc[9_999, "s"] = "other"
    assert hash_value(changed) != hash_value(df)
    assert hash_value(df.rename(columns={"y": "z"})) != hash_value(df)


def test_hash_value_of_something_that_cannot_be_pickled_raises_unhashable():
    with pytest.raises(Unhashable) as info:
        hash_value({"lock": threading.Lock(), "n": 1}, "argument")
    assert info.value.what == "argument"
    assert info.value.type_name == "dict"
    assert info.value.cause is not None


# -- keys do not hash upstream values ------------------------------------------------


class Counted:
    """A value that notes in a file each time it is pickled (hashing pickles too)."""

    def __init__(self, log: str, payload: list[int]) -> None:
        self.log = log
        self.payload = payload

    def __reduce__(self):
        with open(self.log, "a") as fh:
            fh.write("pickled\n")
        return (Counted, (self.log, self.payload))


def test_the_key_of_a_downstream_task_does_not_hash_its_upstream_value(tmp_path):
    log = tmp_path / "pickles"

    @task
    def produce():
        return Counted(str(log), list(range(100)))

    @task
    def consume(c):
        return sum(c.payload)

    with Flow("no-rehash") as flow:
        c = consume(produce())

    first = flow.run()
    assert first.result(c) == 4950
    assert log.read_text().split() == ["pickled"]  # once: written to the store
    second = flow.run()
    assert [r.state for r in second.task_runs] == [State.CACHED, State.CACHED]
    assert second.result(c) == 4950
    assert log.read_text().split() == ["pickled"]  # no more: keys never pickle it


def test_a_cached_rerun_below_a_100_mb_upstream_is_quick(tmp_path):
    @task
    def big():
        return np.ones(100 * 2**20 // 8)

    @task
    def summary(a):
        return float(a[::4096].sum())

    with Flow("big") as flow:
        s = summary(big())

    first = flow.run()
    assert first.result(s) == 3200.0
    start = time.perf_counter()
    second = flow.run()
    took = time.perf_counter() - start
    assert second.result(s) == 3200.0
    assert second["summary"].cached and second["big"].cached
    # Gross check: reading 100 MB back takes a fraction of this; hashing it with
    # joblib (md5) as well, or pickling it into a key, would not fit.
    print(f"first run {first.duration:.2f}s, cached rerun {took:.2f}s")
    assert took < 1.0
