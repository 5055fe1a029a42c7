"""Cache keys: task fingerprints and the hashes of argument values.

A task's fingerprint covers its normalised source (``ast``: comments, docstrings and
formatting do not count), its ``cache_version``, the fingerprints of the functions
it calls that are defined in the user's notebook or project (followed recursively;
installed packages are not), the values of the module-level names it reads and its
closure values. A function whose source cannot be read is fingerprinted by its code
object (bytecode, constants and names) instead.

Keys are the same on every machine for the same code and inputs: nothing here
depends on where the code lives, who runs it, where objects sit in memory or the
process's string hash seed (sets are hashed in sorted order, never by iteration).
"""

from __future__ import annotations

import ast
import builtins
import dis
import hashlib
import inspect
import os
import pickle
import sys
import sysconfig
import textwrap
import types
from typing import Any

# Module globals that say where the code is, not what it computes.
_WHERE = frozenset({"__file__", "__cached__", "__spec__", "__loader__", "__path__"})
_PLAIN = (int, float, str, bytes, bool, type(None), complex)
_STATIC: dict[types.CodeType, tuple[str, tuple[str, ...]]] = {}
_INSTALLED = tuple(
    p
    for p in {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    if p
)


class Unhashable(Exception):  # noqa: N818 - it is a reason, caught internally
    """A value nbflow cannot hash; the task run using it is not cached."""

    def __init__(self, what: str, value: Any, cause: BaseException | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.type_name = type(value).__name__
        self.cause = cause


def digest(*parts: bytes) -> str:
    """The hash of ``parts``, each after its length (8 bytes, little-endian), hashed
    in one call: keys are made on every task's hot path."""
    framed = []
    for part in parts:
        framed.append(len(part).to_bytes(8, "little"))
        framed.append(part)
    return hashlib.blake2b(b"".join(framed), digest_size=16).hexdigest()


def _is_plain(value: Any, depth: int = 0) -> bool:
    t = type(value)
    if t in _PLAIN:
        return True
    if depth > 4:
        return False
    if t is list or t is tuple or t is set or t is frozenset:
        return len(value) < 256 and all(_is_plain(v, depth + 1) for v in value)
    if t is dict:
        return len(value) < 256 and all(
            type(k) is str and _is_plain(v, depth + 1) for k, v in value.items()
        )
    return False


def _canonical(value: Any) -> Any:
    """Plain data with each set as a sorted tuple: a set iterates (and pickles) in an
    order that follows the process's string hash seed, which differs between processes.
    Values without sets come back as they are, so their hashes do not change."""
    t = type(value)
    if t is set or t is frozenset:
        items = sorted((_canonical(v) for v in value), key=repr)
        return ("@set" if t is set else "@frozenset", *items)
    if t is list or t is tuple:
        items = [_canonical(v) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return t(items)
    if t is dict:
        pairs = {k: _canonical(v) for k, v in value.items()}
        if all(pairs[k] is v for k, v in value.items()):
            return value
        return pairs
    return value


def hash_value(value: Any, what: str = "a value") -> str:
    """A stable hash of a value: a fast path for small plain data, ``joblib.hash``
    (fast for numpy and pandas) for everything else. Raises ``Unhashable``."""
    if _is_plain(value):
        return digest(pickle.dumps(_canonical(value), protocol=4))
    try:
        import joblib

        return "j" + str(joblib.hash(value))
    except Exception as exc:
        raise Unhashable(what, value, exc) from None


def is_user_code(obj: Any) -> bool:
    """True for functions and classes of the user's notebook or project."""
    module = getattr(obj, "__module__", None) or ""
    if module == "__main__" or module.startswith("__ipython"):
        return True
    if module == "nbflow" or module.startswith("nbflow."):
        return False
    code = getattr(obj, "__code__", None)
    try:
        filename = code.co_filename if code is not None else inspect.getfile(obj)
    except (TypeError, OSError):
        return False
    if filename.startswith("<"):
        return True  # <ipython-input-...>, <string>: typed in by the user
    if "site-packages" in filename or "dist-packages" in filename:
        return False
    return not filename.startswith(_INSTALLED)


def _is_user_module(module: types.ModuleType) -> bool:
    filename = getattr(module, "__file__", None)
    if not filename or module.__name__.split(".")[0] == "nbflow":
        return False
    if "site-packages" in filename or "dist-packages" in filename:
        return False
    return not filename.startswith(_INSTALLED)


class _StripDocstrings(ast.NodeTransformer):
    def _strip(self, node: Any) -> Any:
        self.generic_visit(node)
        body = node.body
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _strip  # noqa: N815


def normalised_source(obj: Any) -> str | None:
    """The source of a function or class as a canonical AST dump, or None."""
    try:
        source = textwrap.dedent(inspect.getsource(obj))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    if not tree.body or not isinstance(
        tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    ):
        return None  # e.g. a lambda: its line holds more than the lambda
    top = tree.body[0]
    top.decorator_list = []  # @task(...) options are not part of what it computes
    tree = _StripDocstrings().visit(tree)
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def _code_bytes(code: types.CodeType) -> bytes:
    parts = [code.co_code, repr(code.co_names).encode(), repr(code.co_varnames).encode()]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            parts.append(_code_bytes(const))
        elif isinstance(const, frozenset):  # `x in {"a", "b"}`: its repr order follows the seed
            parts.append(repr(sorted(const, key=repr)).encode())
        else:
            parts.append(repr(const).encode())
    return b"\0".join(parts)


def _global_names(code: types.CodeType) -> list[str]:
    """Global names a function reads, and ``name.attr`` for attributes read off them
    (``utils.clean(x)`` reads ``utils`` and ``utils.clean``)."""
    names: dict[str, None] = {}
    previous: str | None = None
    for ins in dis.get_instructions(code):
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME") and isinstance(ins.argval, str):
            names[ins.argval] = None
            previous = ins.argval
            continue
        if previous is not None and ins.opname in ("LOAD_ATTR", "LOAD_METHOD"):
            names[f"{previous}.{ins.argval}"] = None
        previous = None
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.update(dict.fromkeys(_global_names(const)))
    return list(names)


def _static(fn: types.FunctionType) -> tuple[str, tuple[str, ...]]:
    code = fn.__code__
    found = _STATIC.get(code)
    if found is None:
        source = None if fn.__name__ == "<lambda>" else normalised_source(fn)
        body = source.encode() if source is not None else b"code:" + _code_bytes(code)
        found = (digest(body), tuple(_global_names(code)))
        _STATIC[code] = found
    return found


def fingerprint(fn: Any, version: str | None = None) -> str:
    """The fingerprint of a task function (raises ``Unhashable``).

    >>> def f(x):
    ...     return x + 1  # a comment
    >>> before = fingerprint(f)
    >>> def f(x):
    ...     '''A docstring and other spacing.'''
    ...     return x+1
    >>> fingerprint(f) == before
    True
    """
    seen: dict[int, str] = {}
    return digest(_fingerprint(fn, seen).encode(), (version or "").encode())


def _fingerprint(fn: Any, seen: dict[int, str]) -> str:
    fn = getattr(fn, "__wrapped__", fn)
    key = id(fn)
    if key in seen:
        return seen[key]
    seen[key] = "recursive"
    if isinstance(fn, types.FunctionType):
        body, names = _static(fn)
        parts = [body.encode()]
        fn_globals = fn.__globals__
        for name in names:
            if "." in name:  # an attribute of a module of the user's project
                base, _, attr = name.partition(".")
                module = fn_globals.get(base)
                if isinstance(module, types.ModuleType) and _is_user_module(module):
                    parts.append(name.encode())
                    value = getattr(module, attr, None)
                    parts.append(_dependency(value, f"'{name}'", seen).encode())
            elif name in _WHERE:
                # Where the module sits on this machine (an absolute path, a loader
                # object): only the file's name counts, so keys match across checkouts.
                parts.append(name.encode())
                parts.append(os.path.basename(str(fn_globals.get("__file__") or "")).encode())
            elif name in fn_globals:
                parts.append(name.encode())
                parts.append(_dependency(fn_globals[name], f"global '{name}'", seen).encode())
            elif not hasattr(builtins, name):
                parts.append(f"undefined:{name}".encode())
        for i, cell in enumerate(fn.__closure__ or ()):
            try:
                content = cell.cell_contents
            except ValueError:  # empty cell
                continue
            parts.append(_dependency(content, f"closure value {i}", seen).encode())
        if fn.__defaults__:
            parts.append(hash_value(fn.__defaults__, "default arguments").encode())
        if fn.__kwdefaults__:
            parts.append(hash_value(fn.__kwdefaults__, "default arguments").encode())
        result = digest(*parts)
    elif isinstance(fn, type):
        source = normalised_source(fn)
        result = digest(
            (source or f"{fn.__module__}.{fn.__qualname__}").encode(),
            *(
                _dependency(v, f"attribute '{k}'", seen).encode()
                for k, v in vars(fn).items()
                if isinstance(v, types.FunctionType)
            ),
        )
    elif callable(fn) and not isinstance(fn, types.BuiltinFunctionType):
        result = hash_value(fn, "the task function")
    else:
        result = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', fn)!r}"
    seen[key] = result
    return result


def _dependency(value: Any, what: str, seen: dict[int, str]) -> str:
    """What a name a function reads contributes to its fingerprint."""
    if isinstance(value, types.ModuleType):
        return f"module:{value.__name__}"
    inner = getattr(value, "fn", None)  # a Task: follow its function
    if inner is not None and type(value).__name__ == "Task" and callable(inner):
        value = inner
    if isinstance(value, (types.FunctionType, type)):
        if is_user_code(value):
            return _fingerprint(value, seen)
        return f"lib:{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', '')}"
    if isinstance(value, (types.BuiltinFunctionType, types.MethodWrapperType)):
        return f"builtin:{getattr(value, '__qualname__', repr(value))}"
    if type(value).__module__ == "typing" or _is_lib_callable(value):
        return f"lib:{type(value).__qualname__}"
    return hash_value(value, what)


def _is_lib_callable(value: Any) -> bool:
    t = type(value)
    if not callable(value) or isinstance(value, (types.FunctionType, type)):
        return False
    module = sys.modules.get(t.__module__)
    return module is not None and not is_user_code(t)
