"""The ast analysis of %%task cells: what a cell reads (inputs) and binds (outputs)."""

import pytest

from nbflow.cells.analysis import CellSyntaxError, analyse, default_name, normalised


def io(source, bound=()):
    a = analyse(source, bound)
    return set(a.inputs), set(a.outputs)


def test_outputs_are_top_level_bindings_and_inputs_are_names_read_before_binding():
    src = (
        "df = load(path)\nfor i, row in enumerate(df):\n    total = row\n"
        "with open(p) as fh:\n    text = fh.read()"
    )
    inputs, outputs = io(src)
    assert inputs == {"load", "path", "p"}
    assert outputs == {"df", "i", "row", "total", "fh", "text"}


def test_a_name_bound_before_it_is_read_is_not_an_input_but_one_read_first_is():
    assert io("x = 1\ny = x + 1") == (set(), {"x", "y"})
    assert io("y = x + 1\nx = 1") == ({"x"}, {"x", "y"})
    assert io("x = x + 1") == ({"x"}, {"x"})


def test_comprehension_variables_are_not_inputs_but_the_names_they_read_are():
    inputs, outputs = io("squares = [x * k for x in xs if x > lo]\nd = {a: b for a, b in pairs}")
    assert inputs == {"k", "xs", "lo", "pairs"}
    assert outputs == {"squares", "d"}


def test_a_walrus_in_a_comprehension_binds_in_the_cell():
    assert io("res = [y for x in xs if (y := f(x))]") == ({"xs", "f"}, {"y", "res"})


def test_del_removes_an_output_and_deleting_a_notebook_name_reads_it():
    assert io("tmp = 1\nout = tmp\ndel tmp") == (set(), {"out"})
    assert io("del old\nnew = 1") == ({"old"}, {"new"})


def test_augmented_assignment_reads_and_binds_the_name():
    assert io("count += 1") == ({"count"}, {"count"})
    assert io("count = 0\ncount += step") == ({"step"}, {"count"})


def test_imports_bind_their_top_level_name():
    assert io("import os.path\nimport numpy as np\nfrom math import sqrt as root") == (
        set(),
        {"os", "np", "root"},
    )


def test_attribute_or_item_assignment_to_an_input_reads_it_without_binding_it():
    assert io("df.columns = names\ncfg['k'] = 1") == ({"df", "names", "cfg"}, set())


def test_function_bodies_read_late_so_a_name_bound_later_in_the_cell_is_not_an_input():
    inputs, outputs = io("def f(a):\n    return a + helper(a) + later\nlater = 1\nr = f(k)")
    assert inputs == {"helper", "k"}
    assert outputs == {"f", "later", "r"}


def test_global_in_a_nested_function_refers_to_the_cells_scope():
    inputs, _ = io("def bump():\n    global counter\n    counter += 1\n")
    assert inputs == {"counter"}


def test_methods_do_not_see_the_class_body_but_the_class_body_is_read_at_once():
    inputs, outputs = io(
        "class A(Base):\n    k = 1\n    def m(self):\n        return k + g\nobj = A()"
    )
    assert inputs == {"Base", "k", "g"}
    assert outputs == {"A", "obj"}


def test_lambda_parameters_are_local_and_its_free_names_are_inputs():
    assert io("f = lambda q, r=default: q * factor") == ({"default", "factor"}, {"f"})


def test_builtins_are_not_inputs_unless_the_cell_rebinds_them():
    assert io("n = len(range(3))\nprint(n)") == (set(), {"n"})
    assert io("len = 3\nm = len") == (set(), {"len", "m"})


def test_an_exception_name_is_unbound_after_its_handler():
    assert io("try:\n    v = risky()\nexcept ValueError as e:\n    v = str(e)") == (
        {"risky"},
        {"v"},
    )


def test_match_captures_bind_and_a_map_variable_is_given():
    src = (
        "match point:\n    case (x, y):\n        dist = x + y\n"
        "    case {'r': r, **rest}:\n        dist = r"
    )
    assert io(src) == ({"point"}, {"x", "y", "dist", "r", "rest"})
    assert io("out = item * 2", bound=("item",)) == (set(), {"out"})


def test_the_last_expression_is_noted_so_it_can_be_shown():
    assert analyse("x = 1\nx").last_expression
    assert not analyse("x = 1").last_expression


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("from os import *", r"import the names you use"),
        ("x = await thing()", r"async def"),
        ("x = (", r"line 1"),
    ],
)
def test_cells_a_task_cannot_hold_are_refused_with_a_hint(source, message):
    with pytest.raises(CellSyntaxError, match=message):
        analyse(source)


def test_the_default_name_is_the_first_public_output():
    assert default_name(("df",)) == "df"
    assert default_name(("a", "b", "c", "d", "e")) == "a"
    assert default_name(("_", "axes", "ax", "image")) == "axes"
    assert default_name(("_",)) is None and default_name(()) is None


def test_names_starting_with_an_underscore_are_private_to_the_cell():
    assert io("_, axes = plt.subplots()\n_tmp = 1") == ({"plt"}, {"axes"})


def test_a_builtin_name_read_is_kept_apart_so_a_cell_binding_it_can_provide_it():
    a = analyse("m = max(xs)\nt = type\ni = id + input")
    assert set(a.inputs) == {"xs"}
    assert set(a.builtins) == {"max", "type", "id", "input"}
    assert analyse("max = 3\nm = max").builtins == ()


def test_a_class_body_runs_in_order_and_method_bodies_read_late():
    assert io("class F:\n    x = x\n    y = x") == ({"x"}, {"F"})
    src = "class C:\n    def m(self):\n        return helper(limit)\nlimit = 3"
    a = analyse(src)
    assert set(a.inputs) == {"helper"} and set(a.outputs) == {"C", "limit"}
    assert io("class D(Base):\n    k = size * 2") == ({"Base", "size"}, {"D"})


@pytest.mark.parametrize(
    ("source", "mutated"),
    [
        ("grid_search.fit(X_train, y_train)", {"grid_search"}),
        ("rows.append(4)", {"rows"}),
        ("df['c'] = df['a'] * 2", {"df"}),
        ("df.drop(columns=['a'], inplace=True)", {"df"}),
        ("ax.plot([1, 2, 3])", {"ax"}),
        ("model.coef_ = None", {"model"}),
        ("counts += [1]", {"counts"}),
        ("del cache['k']", {"cache"}),
        ("obj.items.sort()", {"obj"}),
        ("for row.value in source:\n    pass", {"row"}),
        ("xs = []\nxs.append(1)", set()),  # its own list: nothing from outside changes
        ("y = f(x)", set()),
    ],
)
def test_an_input_changed_in_place_is_mutated(source, mutated):
    assert set(analyse(source).mutated) == mutated


def test_an_import_is_marked_so_calling_a_modules_functions_is_not_a_mutation():
    a = analyse("import numpy as np\nfrom os import path\nnp = np")
    assert a.imported == ("path",)


def test_the_normalised_form_ignores_comments_and_formatting():
    assert normalised("x = 1  # one\ny=x+1") == normalised("x = 1\n\ny = x + 1\n")
    assert normalised("x = 1") != normalised("x = 2")


def test_an_input_passed_to_a_function_is_noted_unless_the_function_is_a_builtin():
    a = analyse("train(model, data=X)\nn = len(rows)\nsetattr(cfg, 'k', 1)\nprint(msg)")
    assert set(a.passed) == {("train", "model"), ("train", "X"), ("setattr", "cfg")}
    assert analyse("import numpy as np\nfrom m import f\nf(x)\nnp.mean(y)").passed == ()


def test_annotations_are_read_where_python_evaluates_them():
    # A nested function's annotations when its outer function runs; a method's when
    # the class body runs; a class body's annotated names; not a local variable's.
    src = "def outer():\n    def inner(a: A, *r: R) -> Ret:\n        b: Local = 1\n    return inner"
    assert io(src) == ({"A", "R", "Ret"}, {"outer"})
    src = (
        "class P:\n    x: Unit\n    y: int = 3\n"
        "    def m(self, a: Arg):\n        def g(b: Inner): pass"
    )
    assert io(src) == ({"Unit", "Arg", "Inner"}, {"P"})
    assert io("x: T = 1") == (set(), {"x"})


def test_a_dotted_key_of_a_match_mapping_pattern_is_read():
    src = "match d:\n    case {keys.name: v, Color.RED: w}:\n        found = v"
    assert io(src) == ({"d", "keys", "Color"}, {"v", "w", "found"})


def test_a_global_of_a_function_is_shared_and_is_an_output_when_the_cell_calls_it():
    a = analyse("def bump():\n    global counter\n    counter += 1\nbump()")
    assert a.shared == ("counter",) and a.inputs == ("counter",)
    assert a.outputs == ("bump", "counter")
    # Only defined here (called from other cells): the notebook keeps the name.
    a = analyse("def reset():\n    global state\n    state = {}")
    assert a.shared == ("state",) and a.outputs == ("reset",)
    a = analyse("class C:\n    def m(self):\n        global hits\n        hits = 1\nC().m()")
    assert a.shared == ("hits",) and "hits" in a.outputs


def test_the_code_of_time_and_timeit_magics_is_read_and_a_time_statement_binds():
    a = analyse("\nget_ipython().run_line_magic('time', 'y = f(x)')\nz = y")
    assert (set(a.inputs), set(a.outputs)) == ({"f", "x"}, {"y", "z"})
    src = (
        "t = get_ipython().run_line_magic('time', 'g(u)')\n"
        "get_ipython().run_line_magic('timeit', 'h(w)')"
    )
    assert io(src) == ({"g", "u", "h", "w"}, {"t"})
    assert io("get_ipython().run_line_magic('matplotlib', 'inline')") == (set(), set())
    assert io("get_ipython().run_line_magic('timeit', '-n 10 -r 2 h(w)')") == ({"h", "w"}, set())
