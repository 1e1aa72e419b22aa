"""The tree's layering, read from the source with ast: no import cycle among models/, pipeline/
and serving/ (imports inside functions count too), and layers only point down.

An edge is what an import statement loads: `from a.b import c` loads a.b.c when that is a module
(else a.b), and loading a module first runs every package __init__ above it (a.b's loads a), as
Python does. Rules (../shared/STYLE.md): models/ imports neither pipeline/ nor serving/;
serving/ never imports pipeline/; only serving.demo itself imports serving.demo; the task-specific
code of each side lives under its tasks/ package and the shared machinery never imports a task
module directly (only the registries, pipeline.tasks and serving.tasks, are looked up).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "pipeline", "serving")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it loads (see the module docstring)."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        parts = name.split(".")
        while parts and ".".join(parts) not in mods:
            parts.pop()
        return ".".join(parts) or None

    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    up = here[:len(here) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                subs = [f"{base}.{a.name}" for a in node.names]
                names = [s for s in subs if s in mods] + ([base] if any(s not in mods for s in subs) else [])
            else:
                continue
            for name in names:
                if name.split(".")[0] in PACKAGES and (target := resolve(name)) and target != mod:
                    targets.add(target)
        # loading a.b.c runs a/__init__ and a/b/__init__ first (unless we are inside them)
        for target in list(targets):
            parts = target.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                if parent in mods and not (mod == parent or mod.startswith(parent + ".")):
                    targets.add(parent)
        graph[mod] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def layering_breaks(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    def bad(src: str, dst: str) -> bool:
        top = dst.split(".")[0]
        return ((src.startswith("models") and top in ("pipeline", "serving"))
                or (src.startswith("serving") and top == "pipeline")
                or ((dst == "serving.demo" or dst.startswith("serving.demo."))
                    and not src.startswith("serving.demo"))
                # shared machinery reaches a task only through its side's registry
                or (_in_tasks(dst, "pipeline") and dst != "pipeline.tasks"
                    and not _in_tasks(src, "pipeline") and not _task_users(src))
                or (_in_tasks(dst, "serving") and dst not in ("serving.tasks",)
                    and not _in_tasks(src, "serving") and src not in SERVING_TASK_USERS))
    return sorted((s, d) for s, ds in graph.items() for d in ds if bad(s, d))


def _in_tasks(mod: str, side: str) -> bool:
    return mod == f"{side}.tasks" or mod.startswith(f"{side}.tasks.")


# modules outside pipeline/tasks that may import a task module by name: the config sections a
# task adds (TrainConfig.detection), the data writer of `make-shapes task=detection`, and the
# compression stage, which fine-tunes classifiers only (tfmot) and measures them with the
# classification task's evaluation; everything else goes through pipeline.tasks.get_task
PIPELINE_TASK_USERS = ("pipeline.train_config", "pipeline.make_shapes", "pipeline.compress.worker")
# the serving runtime holds a head (serving.tasks picks it) and uses its result types
SERVING_TASK_USERS = ("serving.runtime", "serving.demo.page", "serving.demo.detection",
                      "serving.__main__")


def _task_users(mod: str) -> bool:
    return mod in PIPELINE_TASK_USERS


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    # function-level, from-package-import-module and parent-package edges are all there
    assert "pipeline.tasks" in graph["pipeline.train"]
    assert "serving.nms" in graph["serving.tasks.detect"]
    assert "pipeline.export" in graph["pipeline.run"]          # parent of pipeline.export.core
    assert "models.decoder" in graph["models.contract"]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_cycles_are_found_when_there_is_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_layers_only_point_down():
    assert layering_breaks(import_graph()) == []


@pytest.mark.parametrize("src,dst", [("models.io", "pipeline.config"), ("serving.runtime", "pipeline.config"),
                                     ("pipeline.run", "serving.demo.samples"),
                                     ("pipeline.export.core", "pipeline.tasks.detection.parity")])
def test_each_layering_rule_bites(src, dst):
    assert layering_breaks({src: {dst}}) == [(src, dst)]


def test_edge_package_never_imports_tensorflow_at_module_level():
    """serving/ and the models/ modules serving loads import no TensorFlow, Keras or pipeline at
    module level (the edge install has none of them)."""
    graph = import_graph()
    reach, todo = set(), ["serving.runtime", "serving.tasks", "serving.demo.page"]
    while todo:
        mod = todo.pop()
        if mod not in reach:
            reach.add(mod)
            todo += graph[mod]
    heavy = []
    for mod in sorted(reach):
        tree = ast.parse(_modules()[mod].read_text())
        for node in tree.body:   # module level only: functions may import what they need lazily
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                heavy += [(mod, n) for n in names if n.split(".")[0] in ("tensorflow", "keras", "tf_keras",
                                                                          "pipeline")]
    assert heavy == []
