"""The layout rules: scripts import only geoseg (never another script), and no module imports
another module's private name."""

import ast

import pytest

from conftest import REPO_ROOT

SCRIPTS = sorted([*REPO_ROOT.glob("*.py"), *(REPO_ROOT / "evaluation").glob("*.py")])


def imported_modules(path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import statement in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def test_no_script_imports_another_script():
    script_names = {path.stem for path in SCRIPTS}
    assert {"ensemble_inference", "pseudo_label", "train_supervision", "train_kd"} <= script_names
    for path in SCRIPTS:
        modules = {module.split(".")[0] for module, _ in imported_modules(path)}
        assert not modules & script_names, f"{path.name} imports {modules & script_names}"


def test_no_module_imports_a_private_name_of_another():
    for path in [*SCRIPTS, *(REPO_ROOT / "geoseg").rglob("*.py")]:
        for module, names in imported_modules(path):
            private = [name for name in names if name.startswith("_") and not name.startswith("__")]
            assert not private, f"{path.relative_to(REPO_ROOT)} imports {private} from {module}"


MODELS = REPO_ROOT / "geoseg" / "models"
# the modules of geoseg.models that every other may import: they import none of it
MODELS_BOTTOM = ("common", "weight_files")


def models_import_graph() -> dict[str, set[str]]:
    """module of geoseg.models -> the modules of geoseg.models it imports, at the top or inside a
    function; ``__init__`` is the package itself (``from geoseg.models import MODEL_REGISTRY``)."""
    modules = {path.stem for path in MODELS.glob("*.py")}
    graph = {}
    for path in MODELS.glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}: a relative import"
                names = [node.module]
                if node.module == "geoseg.models":  # a module of the package, or a name of it
                    names = [
                        f"{node.module}.{a.name}" if a.name in modules else node.module
                        for a in node.names
                    ]
            else:
                continue
            for parts in (name.split(".") for name in names):
                if parts[:2] == ["geoseg", "models"]:
                    imported.add(parts[2] if len(parts) > 2 else "__init__")
        graph[path.stem] = imported
    return graph


def floors(graph: dict[str, set[str]]) -> dict[str, int]:
    """module -> 1 + the highest floor of what it imports (0: imports nothing of the package);
    an AssertionError naming the modules of a cycle."""
    found: dict[str, int] = {}

    def floor(module: str, path: tuple[str, ...]) -> int:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module not in found:
            found[module] = 1 + max((floor(m, (*path, module)) for m in graph[module]), default=-1)
        return found[module]

    for module in graph:
        floor(module, ())
    return found


def test_models_modules_stand_in_floors_without_cycles():
    graph = models_import_graph()
    assert {"checkpoint", "encoder_decoder", "record", *MODELS_BOTTOM} <= set(graph)
    for module in MODELS_BOTTOM:
        assert not graph[module], f"{module} imports {graph[module]} of geoseg.models"
    floors(graph)  # raises on a cycle


def test_floors_and_cycles_are_found_in_a_planted_graph():
    assert floors({"a": set(), "b": {"a"}, "c": {"a", "b"}}) == {"a": 0, "b": 1, "c": 2}
    with pytest.raises(AssertionError, match="import cycle: a -> b -> a"):
        floors({"a": {"b"}, "b": {"a"}})
