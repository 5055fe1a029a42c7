"""What a cell reads and binds: the ``ast`` analysis behind ``%%task`` cells.

A cell's *outputs* are the names it binds at top level (assignments, augmented
assignments, ``for``/``with`` targets, imports, ``def``/``class``, walrus, ``match``
captures), minus those it deletes. Its *inputs* are the names it reads that it has
not bound first: at top level in statement order, and inside functions, lambdas and
classes defined in the cell the names they look up in the cell's scope (a function
body runs later, so a name the cell binds anywhere is not an input of it). Builtins
are not inputs unless the cell rebinds them. No IPython here: pure analysis.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass

_BUILTINS = frozenset(dir(builtins)) | {"display", "get_ipython", "__file__", "__name__"}
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


def parse(source: str) -> ast.Module:
    """Parse a cell, refusing what a task cannot hold (top-level await, return, yield)."""
    try:
        tree = ast.parse(source)
        compile(tree, "<cell>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        text = exc.msg
        if "await" in text:
            text += " (a %%task cell runs as a function: move the awaits into an async def)"
        raise CellSyntaxError(f"line {exc.lineno}: {text}") from None
    return tree


def analyse(source: str | ast.Module, bound: tuple[str, ...] = ()) -> CellAnalysis:
    """The inputs and outputs of a cell. ``bound`` names are given to it (a map variable)."""
    tree = parse(source) if isinstance(source, str) else source
    scan = _TopLevel(set(bound))
    for stmt in tree.body:
        scan.stmt(stmt)
    deferred = [n for n in scan.deferred if n not in scan.ever_bound and n not in scan.inputs]
    inputs = [n for n in (*scan.inputs, *deferred) if n not in bound and n not in _BUILTINS]
    outputs = [n for n in scan.outputs if n not in bound]
    last = bool(tree.body) and isinstance(tree.body[-1], ast.Expr)
    return CellAnalysis(tuple(dict.fromkeys(inputs)), tuple(outputs), last)


def default_name(outputs: tuple[str, ...]) -> str:
    """A readable task name from a cell's outputs.

    >>> default_name(("df",)), default_name(("a", "b", "c", "d"))
    ('df', 'a_b_c_and_1_more')
    """
    name = "_".join(outputs[:3])
    if len(outputs) > 3:
        name += f"_and_{len(outputs) - 3}_more"
    return name


def normalised(source: str | ast.Module) -> str:
    """The cell as a canonical AST dump: comments and formatting do not count.

    >>> normalised("x = 1  # one") == normalised("x=1")
    True
    """
    tree = parse(source) if isinstance(source, str) else source
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


class _TopLevel:
    """Walks the cell's top-level scope in evaluation order."""

    def __init__(self, bound: set[str]) -> None:
        self.bound = bound
        self.ever_bound: set[str] = set(bound)
        self.inputs: dict[str, None] = {}
        self.outputs: dict[str, None] = {}
        self.deferred: dict[str, None] = {}

    # -- names -------------------------------------------------------------------
    def read(self, name: str) -> None:
        if name not in self.bound:
            self.inputs[name] = None

    def bind(self, name: str) -> None:
        self.bound.add(name)
        self.ever_bound.add(name)
        self.outputs.pop(name, None)  # keep the order of the last binding
        self.outputs[name] = None

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
        else:  # obj.attr = ..., obj[key] = ...: reads obj (and key), binds nothing
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
                self.read(node.target.id)
            self.expr(node.value)
            self.target(node.target)
        elif isinstance(node, ast.AnnAssign):
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
            self.deferred.update(dict.fromkeys(_free(node)))
            self.bind(node.name)
        elif isinstance(node, ast.ClassDef):
            for e in (*node.decorator_list, *node.bases, *(k.value for k in node.keywords)):
                self.expr(e)
            for name in _free(node):
                self.read(name)
            self.bind(node.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                self.bind(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    raise CellSyntaxError(
                        f"line {node.lineno}: 'from {node.module} import *' hides which names "
                        f"the cell defines; import the names you use "
                        f"(from {node.module} import a, b)."
                    )
                self.bind(alias.asname or alias.name)
        elif isinstance(node, ast.Delete):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    self.read(t.id)
                    self.unbind(t.id)
                else:
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
            elif isinstance(child, ast.MatchMapping) and child.rest:
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


def _free(scope: ast.AST) -> list[str]:
    """Names a function, lambda, comprehension or class body looks up outside itself."""
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
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            local.add(node.name)
            header: list[ast.AST] = [*node.decorator_list]
            if isinstance(node, ast.ClassDef):
                header += [*node.bases, *(k.value for k in node.keywords)]
            else:
                header += [*node.args.defaults, *(d for d in node.args.kw_defaults if d)]
            stack.extend(reversed(header))
            inner = _free(node)
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


def _bind_names(target: ast.AST, into: set[str]) -> None:
    for node in ast.walk(target):
        if isinstance(node, ast.Name):
            into.add(node.id)
