"""The runtime's layering, read from the source with `ast`: who may import whom, and who may write
a request's state. The engine and the worker meet only in engine/messages.py."""

import ast
from pathlib import Path

import pytest

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"
PREFIX = "shoal.runtime."
MESSAGES = "shoal.runtime.engine.messages"
SAMPLING_PARAMS = "shoal.runtime.sampling.params"


def module_name(path: Path) -> str:
    parts = path.relative_to(RUNTIME).with_suffix("").parts
    return PREFIX + ".".join(p for p in parts if p != "__init__") if parts != ("__init__",) else "shoal.runtime"


def imports_of(path: Path) -> set[str]:
    """The shoal.runtime modules a file imports (anywhere in it, lazily or not)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return {name for name in found if name.startswith(PREFIX)}


MODULES = {module_name(p): imports_of(p) for p in sorted(RUNTIME.rglob("*.py"))}


def package(module: str) -> str:
    """engine, worker, model, ...; a module at the top (build, serve, cli) is its own package."""
    return module.removeprefix(PREFIX).split(".")[0]


def in_package(name: str) -> dict[str, set[str]]:
    return {m: imports for m, imports in MODULES.items() if package(m) == name and m != PREFIX + name}


def test_the_worker_reads_only_the_leaf_messages_of_the_engine():
    for module, imports in in_package("worker").items():
        engine = {i for i in imports if package(i) == "engine"}
        assert engine <= {MESSAGES}, f"{module} imports {engine - {MESSAGES}}"


def test_the_engine_imports_no_worker_model_layers_or_kernels_and_of_sampling_only_the_parameters():
    for module, imports in in_package("engine").items():
        below = {i for i in imports if package(i) in ("worker", "model", "layers", "kernels", "sampling")}
        assert below <= {SAMPLING_PARAMS}, f"{module} imports {below - {SAMPLING_PARAMS}}"


def test_the_leaf_messages_import_nothing_but_sampling_parameters():
    assert MODULES[MESSAGES] <= {SAMPLING_PARAMS}


@pytest.mark.parametrize("name", ["model", "layers", "sampling", "kernels", "tokenization"])
def test_the_model_and_its_parts_know_nothing_of_the_engine_or_the_worker(name):
    for module, imports in in_package(name).items():
        above = {i for i in imports if package(i) in ("engine", "worker", "server")}
        assert not above, f"{module} imports {above}"


def test_no_import_cycles_between_packages():
    graph: dict[str, set[str]] = {}
    for module, imports in MODULES.items():
        graph.setdefault(package(module), set()).update(package(i) for i in imports if package(i) != package(module))
    visiting, done = [], set()

    def visit(node: str) -> None:
        if node in done:
            return
        assert node not in visiting, f"import cycle: {' -> '.join(visiting[visiting.index(node) :] + [node])}"
        visiting.append(node)
        for child in sorted(graph.get(node, ())):
            visit(child)
        visiting.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)


# A request's state and who may write it: the scheduler (engine/scheduler.py) alone.
REQUEST_STATE = {
    "token_ids",
    "status",
    "finish_reason",
    "stop_reason",
    "num_computed_tokens",
    "num_pending_tokens",
    "num_cached_tokens",
    "num_preemptions",
}
# Block tables, hashes and registered counts live in the block manager, keyed by request id.
BLOCK_STATE = {"block_ids", "block_hashes", "num_registered", "num_registered_blocks"}
WRITER_OF = {"scheduler": REQUEST_STATE, "block_manager": BLOCK_STATE}


def attribute_writes(path: Path) -> list[tuple[int, str, str]]:
    """(line, object, attribute) for each `x.attr = ...`, `x.attr += ...` and `x.attr.append/extend/...(...)`."""
    mutators = {"append", "extend", "insert", "pop", "clear", "remove"}
    writes = []
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Assign):
            targets = [
                t for target in node.targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])
            ]
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in mutators:
            targets = [node.func.value]
        for target in targets:
            if isinstance(target, ast.Attribute):
                writes.append((node.lineno, ast.unparse(target.value), target.attr))
    return writes


def test_only_the_scheduler_writes_request_state_and_only_the_block_manager_block_tables():
    for path in sorted(RUNTIME.rglob("*.py")):
        if path.parent.name == "server":
            continue  # writes protobuf messages (response.finish_reason), never engine state
        allowed = WRITER_OF.get(path.stem, set()) if path.parent.name == "engine" else set()
        for line, owner, attribute in attribute_writes(path):
            if owner == "self":
                continue  # an object's own fields (Request filling in its defaults, the detokenizer's tokens)
            state = (REQUEST_STATE | BLOCK_STATE) - allowed
            assert attribute not in state, f"{path.relative_to(RUNTIME)}:{line} writes {owner}.{attribute}"


def test_no_function_takes_more_than_six_parameters_but_the_triton_kernels():
    """Beyond six, the arguments want a parameter object (a frozen dataclass) that says what they
    are together. Triton kernels take flat pointers and strides by necessity."""
    for path in sorted(RUNTIME.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if any("jit" in ast.unparse(d) for d in node.decorator_list):
                continue
            names = [
                a.arg
                for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                if a.arg not in ("self", "cls")
            ]
            assert len(names) <= 6, f"{path.relative_to(RUNTIME)}:{node.lineno} {node.name}({', '.join(names)})"
