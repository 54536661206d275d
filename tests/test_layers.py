"""The package's shape (issue 12), read from its source with ast, imports inside functions
included: no import cycle between modules, no private name used across modules, and no import
up the layer order: entry points (datastage/__init__, __main__) -> cli -> api ->
stage/obtain/resolve -> extract/sources/settings -> core (core/errors.py included)."""

import ast
from pathlib import Path

import datastage

ROOT = Path(datastage.__file__).parent
LAYER = {"": 6, "__main__": 6, "cli": 5, "api": 4, "stage": 3, "obtain": 3, "resolve": 3}
LAYER |= {"extract": 2, "sources": 2, "settings": 2, "core": 1}  # a new top-level entry: KeyError


def uses(module: str, path: Path, modules: dict[str, Path]) -> set[tuple[str, str]]:
    """(datastage module, name or "") for each import in ``path`` and each ``module._name``."""
    package = module.split(".")[: None if path.name == "__init__.py" else -1]
    found, aliases = set(), {}
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found |= {(alias.name, "") for alias in node.names}
            aliases |= {alias.asname: alias.name for alias in node.names if alias.asname}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) + 1 - node.level] if node.level else []
            source = ".".join([*base, *filter(None, [node.module])])
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in modules:  # `from . import api`: `api._name` is checked below
                    found.add((submodule, ""))
                    aliases[alias.asname or alias.name] = submodule
                else:
                    found.add((source, alias.name))
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            found.add((node.value.id, node.attr))  # kept below if the name is a module's alias
    found = {(aliases.get(target, target), name) for target, name in found}
    return {(target, name) for target, name in found if target in modules}


def violations() -> set[str]:
    names = {
        path: ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        for path in ROOT.rglob("*.py")
    }
    modules = {name.removesuffix(".__init__"): path for path, name in names.items()}
    layer = {module: LAYER[[*module.split("."), ""][1]] for module in modules}
    graph, found = {module: set() for module in modules}, set()
    for module, path in modules.items():
        for target, name in uses(module, path, modules):
            graph[module].add(target)
            if layer[target] > layer[module]:
                found.add(f"layer {module} -> {target}")
            if name.startswith("_") and not name.startswith("__") and target != module:
                found.add(f"private {module} -> {target}.{name}")
    reach = {module: reachable(graph, module) for module in graph}
    for module in graph:
        cycle = sorted(other for other in reach[module] if module in reach[other])
        if len(cycle) > 1:
            found.add("cycle " + " ".join(cycle))
    return found


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        new = graph[todo.pop()] - seen
        seen |= new
        todo += new
    return seen


def test_no_cycle_no_private_name_across_modules_no_import_up_the_layers():
    assert sorted(violations()) == []
