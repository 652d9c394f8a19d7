"""The package's layering, read from its imports: what serving code loads, which side may import which, private
names kept private, and an ``__all__`` in every module.

The source is read with ``ast`` (an import inside a function counts, one under ``if TYPE_CHECKING:`` does not); what
an import really loads is checked in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "stream_logger"

# A model service imports the emitter side only (README, "Emitting from serving code"), so it must never reach the
# code that consumes Kafka or writes the datamart, nor the drivers those need.
EMITTER_SIDE = [
    "stream_logger",
    "stream_logger.config",
    "stream_logger.contract",
    "stream_logger.delivery",
    "stream_logger.delivery_counts",
    "stream_logger.emitter",
    "stream_logger.encoding",
    "stream_logger.envelope",
    "stream_logger.errors",
    "stream_logger.feedback",
    "stream_logger.feedback_call",
    "stream_logger.kafka_config",
    "stream_logger.lifecycle",
    "stream_logger.openscale",
    "stream_logger.producer",
    "stream_logger.records",
    "stream_logger.scoring_call",
    "stream_logger.serving_shapes",
    "stream_logger.shared_spool",
    "stream_logger.spool",
    "stream_logger.spool_replay",
    "stream_logger.sync",
    "stream_logger.threaded",
]
INGEST_SIDE = [
    "stream_logger.background_worker",
    "stream_logger.csvcopy",
    "stream_logger.datamart",
    "stream_logger.evaluation",
    "stream_logger.fast_rows",
    "stream_logger.feedback_ingest",
    "stream_logger.feedback_tables",
    "stream_logger.health",
    "stream_logger.identifiers",
    "stream_logger.kafka_clients",
    "stream_logger.measurements",
    "stream_logger.metrics",
    "stream_logger.monitor_drift",
    "stream_logger.monitor_fairness",
    "stream_logger.monitor_quality",
    "stream_logger.monitor_run",
    "stream_logger.monitor_traffic",
    "stream_logger.monitors",
    "stream_logger.openscale_client",
    "stream_logger.openscale_credentials",
    "stream_logger.openscale_feedback",
    "stream_logger.openscale_session",
    "stream_logger.openscale_subscription",
    "stream_logger.partitions",
    "stream_logger.readback",
    "stream_logger.registry",
    "stream_logger.replay",
    "stream_logger.retry",
    "stream_logger.rows",
    "stream_logger.sink",
    "stream_logger.subscription",
    "stream_logger.topics",
    "stream_logger.window",
    "stream_logger.worker",
    "stream_logger.worker_config",
]
# The record contract is shared by both sides, so it reaches neither: it imports no other module of the emitter side.
RECORD_CONTRACT = [
    "stream_logger.contract",
    "stream_logger.encoding",
    "stream_logger.envelope",
    "stream_logger.errors",
    "stream_logger.feedback",
    "stream_logger.records",
]
# The programs built on both sides, and what only they use (the CLI's logging, the demo's sample data): no module of
# either side imports them.
APPLICATIONS = [
    "stream_logger.__main__",
    "stream_logger.cli",
    "stream_logger.demo",
    "stream_logger.devstack",
    "stream_logger.logs",
    "stream_logger.samples",
]

DRIVERS = ("asyncpg", "aiokafka")


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def package(self) -> str:
        """The package a relative import in this module starts from."""
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]

    @property
    def where(self) -> str:
        return str(self.path.relative_to(ROOT))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_modules(folder: Path) -> dict[str, Module]:
    """Every Python module under ``folder``, by dotted name."""
    return {
        _module_name(path): Module(_module_name(path), path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
        for path in sorted(folder.rglob("*.py"))
    }


PACKAGE_MODULES = read_modules(ROOT / PACKAGE)
TEST_MODULES = {**read_modules(ROOT / "tests"), **read_modules(ROOT / "benchmarks")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node that runs when the code runs: all but the body of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for node in child.orelse:
                yield node
                yield from runtime_nodes(node)
            continue
        yield child
        yield from runtime_nodes(child)


def imported_from(module: Module, node: ast.ImportFrom) -> str:
    """The absolute name of the module a ``from ... import`` reads."""
    if not node.level:
        return node.module or ""
    base = module.package.split(".")
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _below_top(name: str) -> list[str]:
    """What importing ``a.b.c`` runs below the top package: ``a.b``, then ``a.b.c``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts) + 1)]


def intra_package_imports(module: Module) -> set[str]:
    """The modules of the package that ``module`` loads when it runs (at import or inside a function).

    Importing ``a.b.c`` runs ``a.b`` first. The package itself runs before any of its modules, so it counts only
    where a module names it (``import stream_logger``, ``from stream_logger import Emitter``).
    """
    loaded: set[str] = set()
    for node in runtime_nodes(module.tree):
        if isinstance(node, ast.Import):
            loaded.update(name for alias in node.names for name in _below_top(alias.name) or [alias.name])
        elif isinstance(node, ast.ImportFrom):
            source = imported_from(module, node)
            submodules = {f"{source}.{alias.name}" for alias in node.names} & PACKAGE_MODULES.keys()
            loaded |= submodules
            loaded.update(_below_top(source))
            if len(submodules) < len(node.names):  # names read from the module itself
                loaded.add(source)
    return {name for name in loaded if name in PACKAGE_MODULES and name != module.name}


IMPORTS = {name: intra_package_imports(module) for name, module in PACKAGE_MODULES.items()}


def reachable(start: str) -> set[str]:
    """Every module of the package that importing ``start`` can load, ``start`` included."""
    seen = {start}
    todo = [start]
    while todo:
        for name in IMPORTS[todo.pop()] - seen:
            seen.add(name)
            todo.append(name)
    return seen


def path_to(start: str, goal: str) -> list[str]:
    """The shortest chain of imports from ``start`` to ``goal``, to say where a rule is broken."""
    came_from = {start: start}
    todo = [start]
    while goal not in came_from:
        name = todo.pop(0)
        for nxt in sorted(IMPORTS[name] - came_from.keys()):
            came_from[nxt] = name
            todo.append(nxt)
    chain = [goal]
    while chain[-1] != start:
        chain.append(came_from[chain[-1]])
    return chain[::-1]


def side_of(name: str) -> str | None:
    for side, members in (("EMITTER_SIDE", EMITTER_SIDE), ("INGEST_SIDE", INGEST_SIDE)):
        if name in members:
            return side
    if any(name == app or name.startswith(f"{app}.") for app in APPLICATIONS):
        return "APPLICATIONS"
    return None


def test_every_module_is_on_one_side() -> None:
    assert not set(EMITTER_SIDE) & set(INGEST_SIDE)
    assert set(RECORD_CONTRACT) <= set(EMITTER_SIDE)
    unplaced = [name for name in PACKAGE_MODULES if side_of(name) is None]
    assert not unplaced, f"modules on no side: add each to EMITTER_SIDE, INGEST_SIDE or APPLICATIONS: {unplaced}"
    listed = [*EMITTER_SIDE, *INGEST_SIDE, *APPLICATIONS]
    assert not [name for name in listed if name not in PACKAGE_MODULES], "a listed module does not exist"


def _crossings(starts: list[str], forbidden: set[str]) -> list[str]:
    """Each import by which a module reachable from ``starts`` loads a module of ``forbidden``, with one chain that
    leads to it."""
    chains: dict[tuple[str, str], list[str]] = {}
    for start in starts:
        for name in sorted(reachable(start) & forbidden):
            chain = path_to(start, name)
            first = next(i for i, step in enumerate(chain) if step in forbidden)
            chains.setdefault((chain[first - 1], chain[first]), chain[: first + 1])
    return [" -> ".join(chain) for _, chain in sorted(chains.items())]


def test_the_emitter_side_imports_no_ingest_or_datamart_module() -> None:
    crossings = _crossings(EMITTER_SIDE, set(INGEST_SIDE))
    assert not crossings, "the emitter side reaches ingest code:\n" + "\n".join(crossings)


def test_no_library_module_imports_an_application() -> None:
    applications = {name for name in PACKAGE_MODULES if side_of(name) == "APPLICATIONS"}
    crossings = _crossings(EMITTER_SIDE + INGEST_SIDE, applications)
    assert not crossings, "a library module imports the CLI, the demo or the dev stack:\n" + "\n".join(crossings)


def test_the_record_contract_reaches_neither_side() -> None:
    crossings = _crossings(RECORD_CONTRACT, (set(EMITTER_SIDE) - set(RECORD_CONTRACT)) | set(INGEST_SIDE))
    assert not crossings, "the record contract imports a side's module:\n" + "\n".join(crossings)


@pytest.mark.parametrize("module", ["stream_logger", "stream_logger.emitter", "stream_logger.threaded"])
def test_importing_the_emitter_loads_no_driver_and_no_ingest_module(module: str) -> None:
    code = f"import sys\nimport {module}\nprint('\\n'.join(sorted(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    drivers = sorted({name.split(".")[0] for name in loaded} & set(DRIVERS))
    assert not drivers, f"import {module} loads {drivers}"
    others = sorted(name for name in loaded if name.startswith(f"{PACKAGE}.") and side_of(name) != "EMITTER_SIDE")
    assert not others, f"import {module} loads modules off the emitter side: {others}"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_private_module(name: str) -> bool:
    return any(_is_private(part) for part in name.split("."))


def _module_aliases(module: Module) -> dict[str, str]:
    """Local names bound to a module of the package: ``from . import rows`` binds ``rows``."""
    aliases: dict[str, str] = {}
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE):
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:
                        aliases[PACKAGE] = PACKAGE
        elif isinstance(node, ast.ImportFrom):
            source = imported_from(module, node)
            for alias in node.names:
                if f"{source}.{alias.name}" in PACKAGE_MODULES:
                    aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
    return aliases


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def private_uses(module: Module) -> Iterator[tuple[int, str]]:
    """Where ``module`` takes a private name from another module of the package, or a private module from outside
    its own package: ``(line, what)``."""
    aliases = _module_aliases(module)
    for node in ast.walk(module.tree):
        if isinstance(node, ast.ImportFrom):
            source = imported_from(module, node)
            if not source.startswith(PACKAGE):
                continue
            names = [source, *(f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in PACKAGE_MODULES)]
            yield from ((node.lineno, f"imports {name}") for name in names if _foreign_private_module(module, name))
            yield from (
                (node.lineno, f"imports {alias.name} from {source}")
                for alias in node.names
                if _is_private(alias.name) and f"{source}.{alias.name}" not in PACKAGE_MODULES
            )
        elif isinstance(node, ast.Import):
            yield from (
                (node.lineno, f"imports {alias.name}")
                for alias in node.names
                if alias.name.startswith(PACKAGE) and _foreign_private_module(module, alias.name)
            )
        elif isinstance(node, ast.Attribute) and _is_private(node.attr):
            base = _dotted(node.value)
            head, _, rest = (base or "").partition(".")
            target = aliases.get(head)
            if target is not None and (target_name := ".".join(filter(None, (target, rest)))) in PACKAGE_MODULES:
                yield node.lineno, f"uses {target_name}.{node.attr}"


def _foreign_private_module(module: Module, name: str) -> bool:
    """A private module (``cli._options``) is for the modules of its own package (``cli``) only."""
    if not _is_private_module(name):
        return False
    owner = name.rpartition(".")[0]
    return module.name != owner and not module.name.startswith(f"{owner}.")


def _private_uses_in(modules: dict[str, Module]) -> dict[tuple[str, str], int]:
    """(file, what) -> line, for every private use in ``modules``."""
    return {(module.where, what): line for module in modules.values() for line, what in private_uses(module)}


def _assert_none(found: dict[tuple[str, str], int], rule: str) -> None:
    breaks = [f"{where}:{line}: {what}" for (where, what), line in sorted(found.items())]
    assert not breaks, f"{rule}:\n" + "\n".join(breaks)


def test_no_module_takes_another_modules_private_names() -> None:
    found = _private_uses_in(PACKAGE_MODULES)
    _assert_none(found, "private names of another module")


def test_tests_and_benchmarks_use_no_private_module_or_name_of_the_package() -> None:
    found = _private_uses_in(TEST_MODULES)
    _assert_none(found, "tests use what users use, not private modules or names")


def _is_test_module(name: str) -> bool:
    """A module pytest collects tests or fixtures from (``conftest`` too), not a helper module."""
    return name in TEST_MODULES and (name.rpartition(".")[2].startswith("test_") or name.endswith(".conftest"))


def test_no_test_module_imports_another_test_module() -> None:
    found: dict[tuple[str, str], int] = {}
    for module in TEST_MODULES.values():
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ImportFrom):
                source = imported_from(module, node)
                sources = [source, *(f"{source}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                sources = [alias.name for alias in node.names]
            else:
                continue
            found |= {(module.where, f"imports {s}"): node.lineno for s in sources if _is_test_module(s)}
    _assert_none(found, "shared helpers belong in tests/support.py")


def top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """A module's statements that run at import, through ``if``, ``try`` and ``with`` but not into a function."""
    for node in body:
        yield node
        if isinstance(node, ast.If | ast.With):
            yield from top_level(node.body)
            yield from top_level(getattr(node, "orelse", []))
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from top_level(block)


def bound_names(tree: ast.Module) -> set[str]:
    """The names a module binds at its top level."""
    names: set[str] = set()
    for node in top_level(tree.body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def declared_all(tree: ast.Module) -> list[str] | None:
    """The names in a module's ``__all__``, or None when it has none."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "__all__":
            return list(ast.literal_eval(node.value)) if node.value is not None else []
    return None


@pytest.mark.parametrize("name", sorted(PACKAGE_MODULES))
def test_every_module_says_what_is_public(name: str) -> None:
    module = PACKAGE_MODULES[name]
    public = declared_all(module.tree)
    assert public is not None, f"{module.where} has no __all__"
    assert len(public) == len(set(public)), f"{module.where}: a name is listed twice in __all__"
    missing = set(public) - bound_names(module.tree)
    assert not missing, f"{module.where}: __all__ lists names the module does not define: {sorted(missing)}"
