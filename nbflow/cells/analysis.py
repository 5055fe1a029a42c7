"""What a cell reads and binds: the ``ast`` analysis behind ``%%task`` cells.

A cell's *outputs* are the names it binds at top level (assignments, augmented
assignments, ``for``/``with`` targets, imports, ``def``/``class``, walrus, ``match``
captures), minus those it deletes. Its *inputs* are the names it reads that it has
not bound first: at top level in statement order (class bodies too), and inside
functions, lambdas and methods defined in the cell the names they look up in the
cell's scope (a function body runs later, so a name the cell binds anywhere is not
an input of it). Builtin names read are kept apart (``builtins``): another task cell
may bind them. Names starting with ``_`` are private to the cell: never outputs.

A name that a function of the cell declares ``global`` is the cell's own name, as at
the top of a notebook (``shared``); one the function binds is an output when the cell
calls the function. ``%time STATEMENT`` runs the statement in the cell (timed), and
the code of ``%time``/``%timeit`` is read like the cell's.

An input the cell *mutates* (a method call on it, an attribute or item assignment or
deletion, an augmented assignment) is listed in ``mutated``: the cell produces a new
version of it. No IPython here: pure analysis.
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass

_BUILTINS = frozenset(dir(builtins)) | {"display", "get_ipython", "__file__", "__name__"}
_CHANGING_BUILTINS = frozenset({"setattr", "delattr", "exec", "next", "vars"})
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


class CellSyntaxError(ValueError):
    """A cell nbflow cannot turn into a task (the message says what to write instead)."""


@dataclass(frozen=True)
class CellAnalysis:
    """The names a cell reads from outside (``inputs``) and binds (``outputs``).

    >>> a = analyse("total = sum(x * scale for x in xs)\\ntotal += offset")
    >>> a.inputs, a.outputs
    (('xs', 'scale', 'offset'), ('total',))
    """

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    last_expression: bool  # the cell ends with an expression (shown, as in a notebook)
    builtins: tuple[str, ...] = ()  # builtin names read before binding (``max``, ``id``)
    mutated: tuple[str, ...] = ()  # inputs changed in place (``model.fit(...)``)
    imported: tuple[str, ...] = ()  # outputs whose last binding is an import (modules)
    passed: tuple[tuple[str, str], ...] = ()  # (function, input) for f(x): f may change x
    shared: tuple[str, ...] = ()  # names its functions declare global: the cell's own


def parse(source: str) -> ast.Module:
    """Parse a cell, refusing what a task cannot hold (top-level await, return, yield).
    A ``%time STATEMENT`` line becomes the statement, run in the cell and timed."""
    try:
        tree = ast.parse(source)
        compile(tree, "<cell>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        text = exc.msg
        if "await" in text:
            text += " (a %%task cell runs as a function: move the awaits into an async def)"
        raise CellSyntaxError(f"line {exc.lineno}: {text}") from None
    if "run_line_magic" in source:
        tree = _InlineTime().visit(tree)
    return tree


TIMED = "__nbflow_timed"  # the helper a ``%time`` statement becomes (cells.function)
_INTERNAL = "__nbflow_"


def line_magic(node: ast.AST) -> tuple[str, str] | None:
    """``(name, code)`` of ``get_ipython().run_line_magic(name, code)``, else None.

    >>> line_magic(ast.parse("get_ipython().run_line_magic('time', 'y = f(x)')").body[0].value)
    ('time', 'y = f(x)')
    """
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return None
    owner = node.func.value
    if not (
        node.func.attr == "run_line_magic"
        and isinstance(owner, ast.Call)
        and isinstance(owner.func, ast.Name)
        and owner.func.id == "get_ipython"
        and len(node.args) == 2
        and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)
    ):
        return None
    return node.args[0].value, node.args[1].value  # type: ignore[attr-defined]


# The options of %timeit before its code (-n 10 -r 3 -o ...).
_TIMEIT_OPTIONS = re.compile(r"\s*(-[nrpv]\s*\S+|-[tcqo])(?=\s)")


def _is_magic_call(node: ast.AST) -> bool:
    """A quick look: ``<something>.run_line_magic(...)``."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "run_line_magic"
    )


def _magic_code(node: ast.AST) -> ast.Module | None:
    """The Python code a ``%time``/``%timeit`` line runs (None: another magic).

    >>> line = ast.parse("get_ipython().run_line_magic('timeit', '-n 3 -o f(x)')")
    >>> ast.unparse(_magic_code(line.body[0].value))
    'f(x)'
    """
    found = line_magic(node)
    if found is None or found[0] not in ("time", "timeit"):
        return None
    code = found[1]
    if found[0] == "timeit":
        while (option := _TIMEIT_OPTIONS.match(code)) is not None:
            code = code[option.end() :]
    try:
        return ast.parse(code.strip())
    except SyntaxError:
        return None


class _InlineTime(ast.NodeTransformer):
    """``%time y = f(x)`` as a statement: ``with __nbflow_timed(): y = f(x)``, so the
    names it binds are the cell's (IPython's magic would bind them in the notebook).
    ``%time f(x)`` stays IPython's: it binds nothing, and its value is shown."""

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        found = line_magic(node.value)
        code = _magic_code(node.value) if found is not None and found[0] == "time" else None
        if (
            code is None
            or not code.body
            or (len(code.body) == 1 and isinstance(code.body[0], ast.Expr))
        ):
            return node  # an expression binds nothing: IPython's %time shows its value
        for child in ast.walk(code):
            if "lineno" in child._attributes:
                child.lineno = child.end_lineno = node.lineno  # type: ignore[attr-defined]
                child.col_offset = node.col_offset  # type: ignore[attr-defined]
                child.end_col_offset = node.end_col_offset  # type: ignore[attr-defined]
        call = ast.Call(ast.Name(TIMED, ast.Load()), [], [])
        timed = ast.With([ast.withitem(call, None)], code.body)
        return ast.fix_missing_locations(ast.copy_location(timed, node))


def analyse(source: str | ast.Module, bound: tuple[str, ...] = ()) -> CellAnalysis:
    """The inputs and outputs of a cell. ``bound`` names are given to it (a map variable)."""
    tree = parse(source) if isinstance(source, str) else source
    scan = _TopLevel(set(bound))
    for stmt in tree.body:
        scan.stmt(stmt)
    deferred = [n for n in scan.deferred if n not in scan.ever_bound and n not in scan.inputs]
    read = [n for n in (*scan.inputs, *deferred) if n not in bound and not n.startswith(_INTERNAL)]
    inputs = [n for n in read if n not in _BUILTINS]
    outputs = [n for n in scan.outputs if n not in bound and not private(n)]
    # What a function the cell calls binds in the cell's (global) scope.
    called = scan.loads | set(scan.deferred)
    for function, names in scan.global_binds.items():
        if function in called:
            outputs += [n for n in names if n not in outputs and n not in bound and not private(n)]
    mutated = [n for n in scan.mutated if n in inputs and not private(n)]
    last = bool(tree.body) and isinstance(tree.body[-1], ast.Expr)
    return CellAnalysis(
        tuple(dict.fromkeys(inputs)),
        tuple(outputs),
        last,
        tuple(dict.fromkeys(n for n in read if n in _BUILTINS)),
        tuple(mutated),
        tuple(n for n in outputs if n in scan.imported),
        tuple(
            (f, n)
            for f, n in scan.passed
            if n in inputs
            and not private(n)
            and f not in scan.imported
            and (f not in _BUILTINS or f in _CHANGING_BUILTINS or f in scan.ever_bound)
        ),
        tuple(scan.shared),
    )


def private(name: str) -> bool:
    """Names starting with ``_`` belong to their cell (``_, axes = plt.subplots()``).

    >>> private("_"), private("_tmp"), private("df")
    (True, True, False)
    """
    return name.startswith("_")


def default_name(outputs: tuple[str, ...], imported: tuple[str, ...] = ()) -> str | None:
    """A readable task name from a cell's outputs: the first public one that is not a
    module, else the first module (None: no public output).

    >>> default_name(("df",)), default_name(("_", "axes", "ax")), default_name(("_",))
    ('df', 'axes', None)
    >>> default_name(("time", "slow"), imported=("time",))
    'slow'
    """
    public = [n for n in outputs if not private(n)]
    return next((n for n in public if n not in imported), public[0] if public else None)


def normalised(source: str | ast.Module) -> str:
    """The cell as a canonical AST dump: comments and formatting do not count.

    >>> normalised("x = 1  # one") == normalised("x=1")
    True
    """
    tree = parse(source) if isinstance(source, str) else source
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


class _TopLevel:
    """Walks the cell's top-level scope in evaluation order."""

    def __init__(self, bound: set[str], in_class: bool = False) -> None:
        self.bound = bound
        self.in_class = in_class
        self.loads: set[str] = set()  # every name read at this level
        self.shared: dict[str, None] = {}  # names declared global by its functions
        self.global_binds: dict[str, set[str]] = {}  # function or class -> globals it binds
        self.ever_bound: set[str] = set(bound)
        self.inputs: dict[str, None] = {}
        self.outputs: dict[str, None] = {}
        self.deferred: dict[str, None] = {}
        self.mutated: dict[str, None] = {}
        self.imported: set[str] = set()
        self.passed: dict[tuple[str, str], None] = {}

    # -- names -------------------------------------------------------------------
    def read(self, name: str) -> None:
        self.loads.add(name)
        if name not in self.bound:
            self.inputs[name] = None

    def bind(self, name: str, imported: bool = False) -> None:
        self.bound.add(name)
        self.ever_bound.add(name)
        self.outputs.pop(name, None)  # keep the order of the last binding
        self.outputs[name] = None
        if imported:
            self.imported.add(name)
        else:
            self.imported.discard(name)

    def mutate(self, node: ast.expr) -> None:
        """``node`` (``x.a``, ``x[k]``, ``x.a.b``) is changed in place: so is ``x``, when
        ``x`` comes from outside the cell."""
        while isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        if isinstance(node, ast.Name) and node.id not in self.bound:
            self.mutated[node.id] = None

    def unbind(self, name: str) -> None:
        self.bound.discard(name)
        self.outputs.pop(name, None)

    def target(self, node: ast.expr) -> None:
        if isinstance(node, ast.Name):
            self.bind(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                self.target(elt)
        elif isinstance(node, ast.Starred):
            self.target(node.value)
        else:  # obj.attr = ..., obj[key] = ...: reads obj (and key), changes obj
            self.mutate(node)
            self.expr(node)

    # -- statements ----------------------------------------------------------------
    def stmts(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.stmt(stmt)

    def stmt(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Assign):
            self.expr(node.value)
            for t in node.targets:
                self.target(t)
        elif isinstance(node, ast.AugAssign):
            if isinstance(node.target, ast.Name):
                self.mutate(node.target)  # xs += [1] extends the list in place
                self.read(node.target.id)
            self.expr(node.value)
            self.target(node.target)
        elif isinstance(node, ast.AnnAssign):
            if self.in_class and node.simple:
                self.expr(node.annotation)  # kept in the class's __annotations__
            if node.value is not None:
                self.expr(node.value)
                self.target(node.target)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            self.expr(node.iter)
            self.target(node.target)
            self.stmts(node.body)
            self.stmts(node.orelse)
        elif isinstance(node, (ast.While, ast.If)):
            self.expr(node.test)
            self.stmts(node.body)
            self.stmts(node.orelse)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                self.expr(item.context_expr)
                if item.optional_vars is not None:
                    self.target(item.optional_vars)
            self.stmts(node.body)
        elif isinstance(node, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            self._try(node)  # type: ignore[arg-type]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self._def_header(node)
            saw_global: list[bool] = []
            self.deferred.update(dict.fromkeys(_free(node, saw_global)))
            if saw_global:
                declared, binds = _globals_of(node)
                self.shared.update(dict.fromkeys(declared))
                if binds:
                    self.global_binds.setdefault(node.name, set()).update(binds)
            self.bind(node.name)
        elif isinstance(node, ast.ClassDef):
            for e in (*node.decorator_list, *node.bases, *(k.value for k in node.keywords)):
                self.expr(e)
            # The body runs now, in order, in a scope of its own (``x = x`` reads the
            # cell's x); its methods run later and do not see the class's names.
            body = _TopLevel(set(), in_class=True)
            body.stmts(node.body)
            for name in body.inputs:
                self.read(name)
            for name in body.mutated:
                self.mutate(ast.Name(name, ast.Load()))
            self.deferred.update(body.deferred)
            self.shared.update(body.shared)
            for names in body.global_binds.values():  # a method binds when the class is used
                self.global_binds.setdefault(node.name, set()).update(names)
            self.bind(node.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                self.bind(alias.asname or alias.name.split(".")[0], imported=True)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    raise CellSyntaxError(
                        f"line {node.lineno}: 'from {node.module} import *' hides which names "
                        f"the cell defines; import the names you use "
                        f"(from {node.module} import a, b)."
                    )
                self.bind(alias.asname or alias.name, imported=True)
        elif isinstance(node, ast.Delete):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    self.read(t.id)
                    self.unbind(t.id)
                else:  # del x[k], del x.a
                    self.mutate(t)
                    self.expr(t)
        elif isinstance(node, ast.Match):
            self.expr(node.subject)
            for case in node.cases:
                self._pattern(case.pattern)
                if case.guard is not None:
                    self.expr(case.guard)
                self.stmts(case.body)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            pass  # at top level a global statement changes nothing
        else:  # Expr, Return, Raise, Assert, Pass, Break, Continue
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.expr):
                    self.expr(child)

    def _try(self, node: ast.Try) -> None:
        self.stmts(node.body)
        for handler in node.handlers:
            if handler.type is not None:
                self.expr(handler.type)
            had = handler.name is not None and handler.name in self.bound
            if handler.name:
                self.bind(handler.name)
            self.stmts(handler.body)
            if handler.name and not had:
                self.unbind(handler.name)  # Python deletes it at the end of the handler
        self.stmts(node.orelse)
        self.stmts(node.finalbody)

    def _def_header(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        args = node.args
        for e in (*args.defaults, *(d for d in args.kw_defaults if d is not None)):
            self.expr(e)
        if not isinstance(node, ast.Lambda):
            for e in node.decorator_list:
                self.expr(e)
            for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
                if a is not None and a.annotation is not None:
                    self.expr(a.annotation)
            if node.returns is not None:
                self.expr(node.returns)

    def _pattern(self, node: ast.pattern) -> None:
        for child in ast.walk(node):
            if isinstance(child, (ast.MatchAs, ast.MatchStar)) and child.name:
                self.bind(child.name)
            elif isinstance(child, ast.MatchMapping):
                for key in child.keys:  # case {Color.RED: v}: a value pattern, read
                    self.expr(key)
                if child.rest:
                    self.bind(child.rest)
            elif isinstance(child, ast.MatchValue):
                self.expr(child.value)
            elif isinstance(child, ast.MatchClass):
                self.expr(child.cls)

    # -- expressions ---------------------------------------------------------------
    def expr(self, node: ast.expr) -> None:
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                self.read(node.id)
            return
        if isinstance(node, ast.NamedExpr):
            self.expr(node.value)
            self.target(node.target)
            return
        if isinstance(node, ast.Lambda):
            self._def_header(node)
            self.deferred.update(dict.fromkeys(_free(node)))
            return
        code = _magic_code(node) if _is_magic_call(node) else None
        if code is not None:  # %timeit f(x), y = %time f(x): IPython runs it with the cell's names
            inner = _TopLevel(set(self.bound))
            inner.stmts(code.body)
            for name in (*inner.inputs, *inner.deferred):
                self.read(name)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            self.mutate(node.func.value)  # x.append(1), model.fit(X), x.a.sort()
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            # train(model) may change model: whether it can depends on what train is
            # (a library's function cannot know the notebook's names), decided by the graph.
            for arg in (*node.args, *(k.value for k in node.keywords)):
                value = arg.value if isinstance(arg, ast.Starred) else arg
                if isinstance(value, ast.Name) and value.id not in self.bound:
                    self.passed[(node.func.id, value.id)] = None
        if isinstance(node, _COMPREHENSIONS):
            self.expr(node.generators[0].iter)  # evaluated in the cell's scope
            for name in _free(node):
                self.read(name)
            for walrus in _walrus_targets(node):
                self.bind(walrus)  # := inside a comprehension binds in the cell
            return
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.expr(child)
            elif isinstance(child, ast.keyword):
                self.expr(child.value)
            elif isinstance(child, ast.comprehension):  # pragma: no cover - handled above
                self.expr(child.iter)


def _walrus_targets(node: ast.AST) -> list[str]:
    out = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (*_FUNCTIONS, ast.ClassDef)):
            continue
        if isinstance(child, ast.NamedExpr) and isinstance(child.target, ast.Name):
            out.append(child.target.id)
        out.extend(_walrus_targets(child))
    return out


def _free(scope: ast.AST, saw_global: list[bool] | None = None) -> list[str]:
    """Names a function, lambda, comprehension or class body looks up outside itself
    (``saw_global`` gets an item when a ``global`` statement is in it)."""
    local: set[str] = set()
    declared_global: set[str] = set()
    loads: dict[str, None] = {}
    if isinstance(scope, _FUNCTIONS):
        args = scope.args
        for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if a is not None:
                local.add(a.arg)
        body: list[ast.AST] = [scope.body] if isinstance(scope, ast.Lambda) else list(scope.body)
    elif isinstance(scope, _COMPREHENSIONS):
        body = []
        for i, gen in enumerate(scope.generators):
            _bind_names(gen.target, local)
            if i:
                body.append(gen.iter)  # the first iterable is read by the enclosing scope
            body.extend(gen.ifs)
        body.extend([scope.key, scope.value] if isinstance(scope, ast.DictComp) else [scope.elt])
    elif isinstance(scope, ast.ClassDef):
        body = list(scope.body)
    else:  # pragma: no cover - only called with scopes
        return []
    methods_free: dict[str, None] = {}
    stack = list(reversed(body))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                loads[node.id] = None
            else:
                local.add(node.id)
            continue
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            declared_global.update(node.names)
            if saw_global is not None and isinstance(node, ast.Global):
                saw_global.append(True)
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            local.add(node.name)
            header: list[ast.AST] = [*node.decorator_list]
            if isinstance(node, ast.ClassDef):
                header += [*node.bases, *(k.value for k in node.keywords)]
            else:
                header += [*node.args.defaults, *(d for d in node.args.kw_defaults if d)]
                header += _annotations(node)  # evaluated when the def runs
            stack.extend(reversed(header))
            inner = _free(node, saw_global)
            if isinstance(scope, ast.ClassDef):  # methods do not see the class body's names
                methods_free.update(dict.fromkeys(inner))
            else:
                loads.update(dict.fromkeys(inner))
            continue
        if isinstance(node, (ast.Lambda, *_COMPREHENSIONS)):
            if isinstance(node, ast.Lambda):
                defaults = [*node.args.defaults, *node.args.kw_defaults]
                stack.extend(reversed([d for d in defaults if d is not None]))
            else:
                stack.append(node.generators[0].iter)
            loads.update(dict.fromkeys(_free(node)))
            for walrus in _walrus_targets(node) if not isinstance(node, ast.Lambda) else ():
                local.add(walrus)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                local.add(alias.asname or alias.name.split(".")[0])
            continue
        if isinstance(node, ast.AnnAssign) and not isinstance(scope, ast.ClassDef):
            # A local variable's annotation is never evaluated; a class body's is.
            stack.extend(reversed([c for c in (node.target, node.value) if c is not None]))
            continue
        if isinstance(node, ast.ExceptHandler) and node.name:
            local.add(node.name)
        if isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            local.add(node.name)
        if isinstance(node, ast.MatchMapping) and node.rest:
            local.add(node.rest)
        if isinstance(node, ast.arg):
            continue
        stack.extend(reversed([c for c in ast.iter_child_nodes(node) if c is not None]))
    free = [n for n in loads if n not in local or n in declared_global]
    free += [n for n in declared_global if n in local and n not in free]  # global x; x = 1
    free += [n for n in methods_free if n not in free]
    return free


def _annotations(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.expr]:
    """The annotations of a function's parameters and return."""
    args = node.args
    found = [
        a.annotation
        for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg)
        if a is not None and a.annotation is not None
    ]
    return [*found, *([node.returns] if node.returns is not None else [])]


def _globals_of(node: ast.AST) -> tuple[list[str], list[str]]:
    """The names the functions in ``node`` (itself included) declare ``global``, and
    those of them the declaring function binds.

    >>> _globals_of(ast.parse("def f():\\n    global n, m\\n    n = 1\\n    return m").body[0])
    (['n', 'm'], ['n'])
    """
    declared: dict[str, None] = {}
    binds: dict[str, None] = {}
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef)
    for fn in [n for n in ast.walk(node) if isinstance(n, kinds)]:
        names: dict[str, None] = {}
        stored: set[str] = set()
        stack: list[ast.AST] = list(fn.body)
        while stack:  # this function's own scope: nested scopes are visited on their own
            child = stack.pop()
            if isinstance(child, ast.Global):
                names.update(dict.fromkeys(child.names))
                continue
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                stored.add(child.name)
                continue
            if isinstance(child, (ast.Lambda, *_COMPREHENSIONS)):
                continue
            if isinstance(child, ast.Name) and not isinstance(child.ctx, ast.Load):
                stored.add(child.id)
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                stored.update(a.asname or a.name.split(".")[0] for a in child.names)
            stack.extend(ast.iter_child_nodes(child))
        declared.update(names)
        binds.update(dict.fromkeys(n for n in names if n in stored))
    return list(declared), list(binds)


def _bind_names(target: ast.AST, into: set[str]) -> None:
    for node in ast.walk(target):
        if isinstance(node, ast.Name):
            into.add(node.id)
