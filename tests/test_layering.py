"""The house's layering rules, checked on the source: core code never goes through the CLI, and
modules share public helpers, not each other's private names."""

import ast
from pathlib import Path

import spurmem

SRC = Path(spurmem.__file__).parent
CLI_LAYER = {"cli.py", "cli_options.py", "__main__.py"}  # plus every */commands.py and the CLI reference


def modules():
    for path in sorted(SRC.rglob("*.py")):
        yield path.relative_to(SRC), ast.parse(path.read_text(), filename=str(path))


def imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [a.name for a in node.names], node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], node.lineno


def is_cli_layer(rel: Path) -> bool:
    return rel.name in CLI_LAYER or rel.name.endswith("commands.py") or rel.as_posix() == "report/cli_reference.py"


def test_core_modules_never_import_the_cli():
    bad = [f"{rel}:{line} imports {module}" for rel, tree in modules() if not is_cli_layer(rel)
           for module, _, line in imports(tree) if module == "spurmem.cli" or module.startswith("spurmem.cli.")]
    assert not bad, "core code must call core functions, not spurmem.cli: " + "; ".join(bad)


def test_no_module_imports_another_modules_private_names():
    bad = [f"{rel}:{line} imports {name} from {module}" for rel, tree in modules()
           for module, names, line in imports(tree) if module.startswith("spurmem")
           for name in names if name.startswith("_") and not name.startswith("__")]
    assert not bad, "share a public helper in one module both import: " + "; ".join(bad)
