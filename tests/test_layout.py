"""The layout rules: scripts import only geoseg (never another script), and no module imports
another module's private name."""

import ast

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
