"""A task is a plug-in: outside the task modules, no code asks which task it serves.

Everything that differs between tasks (targets, loss, metrics, the score that ranks runs, training policy, what
export writes) is a method or attribute of `cvkit.tasks.Task`; the rest of cvkit calls it. This test reads the
package's source (its syntax tree, so comments and docstrings do not count) and fails on the ways code asks instead:
`isinstance` on a task class, a comparison with a task's name, `type(task)`, or `hasattr` on an evaluation."""
from __future__ import annotations
import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO/"cvkit"
TASKS_PACKAGE = PACKAGE/"tasks"                 # where tasks are defined: the only place that may tell them apart
EVALUATION_ATTRS = {"per_class", "per_label", "confusion_matrix", "threshold", "choose_threshold", "macro_f1", "accuracy"}


def task_vocabulary() -> tuple[set[str], set[str]]:
    "The registered task classes' names and every name and alias `get_task` accepts."
    from cvkit.tasks import TASKS, task_names
    return {cls.__name__ for cls in TASKS.values()} | {"Task"}, set(task_names(aliases=True))


def _names(node:ast.AST) -> set[str]:
    "Every plain or dotted name inside `node` (for `a.b.c`: 'c')."
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def task_branches(source:str, where:str="") -> list[str]:
    "The places in `source` that ask which task they serve, as 'where:line: what'."
    classes, names = task_vocabulary()
    concrete = classes - {"Task"}
    docstrings = {id(n.body[0].value) for n in ast.walk(ast.parse(source))
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(ast.parse(source)):
        what = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "isinstance" and len(node.args) == 2 and _names(node.args[1]) & concrete:
                what = f"isinstance(..., {ast.unparse(node.args[1])})"
            elif node.func.id == "type" and node.args and "task" in ast.unparse(node.args[0]).lower():
                what = f"type({ast.unparse(node.args[0])})"
            elif node.func.id == "hasattr" and len(node.args) == 2 and isinstance(node.args[1], ast.Constant) \
                    and node.args[1].value in EVALUATION_ATTRS:
                what = f"hasattr(..., {node.args[1].value!r})"
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(s, ast.Attribute) and s.attr == "name" and "task" in ast.unparse(s.value).lower() for s in sides):
                what = f"compares a task's name: {ast.unparse(node)}"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names and id(node) not in docstrings:
            what = f"the task name {node.value!r} written out"
        if what: found.append(f"{where}:{getattr(node, 'lineno', '?')}: {what}")
    return found


def test_no_module_outside_the_tasks_asks_which_task():
    modules = sorted(p for p in PACKAGE.rglob("*.py") if TASKS_PACKAGE not in p.parents and p.name != "_modidx.py")
    assert len(modules) > 30, modules
    found = [f for p in modules for f in task_branches(p.read_text(), str(p.relative_to(REPO)))]
    assert not found, "code outside cvkit/tasks/ asks which task it serves; ask the task instead:\n" + "\n".join(found)


def test_planted_task_branches_are_caught():
    "Each way of asking, planted in a real module, is caught (and the module as it is passes)."
    source = (PACKAGE/"experiment"/"training.py").read_text()
    assert task_branches(source) == []
    plants = ["def _f(task): return isinstance(task, MultiLabel)",
              "def _f(items): return items.task.name == 'multi_label'",
              "def _f(ev): return ev.per_class() if hasattr(ev, 'per_class') else ev.per_label()",
              "def _f(task): return 0.1 if task in ('single_label',) else 0.0",
              "def _f(spec): return type(spec.task).__name__",
              "def _f(x): return isinstance(x, (int, SingleLabel))"]
    for plant in plants:
        assert task_branches(source + "\n" + plant + "\n"), plant
    assert task_branches('def _f():\n    "Works for single_label and multi_label data."\n    return 1\n') == []   # prose is fine
