"""The shape of the package, measured from its source: what issue 19 asked to keep true.

    python scripts/architecture.py [ROOT]      # prints the numbers; exit 1 when a goal is missed

Goals (GOALS): no import cycle between modules of the package (imports inside functions count:
they are a cycle deferred, not removed), no module over 450 lines, no function over 100 lines,
at most 60 parameters typed ``Any`` in core/, no core error message naming a command-line flag,
and no core error raised with a sentence instead of a code (core/errors.py). tests/
test_architecture.py runs it, so the bar stays where it is.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

GOALS = {"cycles": 0, "max_module_lines": 450, "max_function_lines": 100, "core_any": 60}
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")
# Exceptions that are programming errors, not messages for users: they keep their sentences.
_PLAIN_EXCEPTIONS = {
    "ValueError",
    "RuntimeError",
    "TypeError",
    "KeyError",
    "AssertionError",
    "NotImplementedError",
}


@dataclass
class Shape:
    modules: dict[str, int] = field(default_factory=dict)  # module -> lines
    long_functions: list[tuple[str, int]] = field(default_factory=list)
    core_any: int = 0
    flag_messages: list[str] = field(default_factory=list)
    sentence_raises: list[str] = field(default_factory=list)
    cycles: list[list[str]] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = []
        if self.cycles:
            out.append(
                f"{len(self.cycles)} import cycles: " + "; ".join(" <-> ".join(c) for c in self.cycles)
            )
        big = sorted((n, m) for m, n in self.modules.items() if n > GOALS["max_module_lines"])
        if big:
            out.append("modules over 450 lines: " + ", ".join(f"{m} {n}" for n, m in big))
        if self.long_functions:
            out.append("functions over 100 lines: " + ", ".join(f"{f} ({n})" for f, n in self.long_functions))
        if self.core_any > GOALS["core_any"]:
            out.append(f"{self.core_any} core parameters typed Any (goal <= {GOALS['core_any']})")
        if self.flag_messages:
            out.append("core messages naming CLI flags: " + ", ".join(self.flag_messages))
        if self.sentence_raises:
            out.append("core errors raised with a sentence, not a code: " + ", ".join(self.sentence_raises))
        return out


def _module_name(path: Path, root: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_pkg = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_pkg else parts), is_pkg


def _imports(node: ast.AST, name: str, is_pkg: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = name.split(".") if is_pkg else name.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        return [f"{module}.{a.name}" for a in node.names] + [module]
    return []


def measure(root: Path, package: str = "paligemma_qgis") -> Shape:
    shape = Shape()
    files = {}
    for path in sorted((root / package).rglob("*.py")):
        name, is_pkg = _module_name(path, root)
        files[name] = (path, is_pkg)
    edges: dict[str, set[str]] = {name: set() for name in files}
    for name, (path, is_pkg) in files.items():
        source = path.read_text()
        shape.modules[str(path.relative_to(root))] = len(source.splitlines())
        core = ".core" in name
        for node in ast.walk(ast.parse(source)):
            for target in _imports(node, name, is_pkg):
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    if files[target][1] and len(files[target][0].read_text().splitlines()) < 40:
                        continue  # a package's small __init__ re-exports; it holds no logic
                    edges[name].add(target)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > GOALS["max_function_lines"]:
                    shape.long_functions.append(
                        (f"{path.relative_to(root)}:{node.lineno} {node.name}", lines)
                    )
                if core:
                    args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                    shape.core_any += sum(
                        a.annotation is not None and ast.unparse(a.annotation) in ("Any", "typing.Any")
                        for a in args
                    )
            if core and isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                _check_raise(node, path.relative_to(root), shape)
    shape.cycles = _cycles(edges)
    return shape


def _check_raise(node: ast.Raise, where: Path, shape: Shape) -> None:
    call = node.exc
    assert isinstance(call, ast.Call)
    func = ast.unparse(call.func).rpartition(".")[2]
    texts = [s.value for s in ast.walk(call) if isinstance(s, ast.Constant) and isinstance(s.value, str)]
    if any(_FLAG.search(t) for t in texts):
        shape.flag_messages.append(f"{where}:{node.lineno}")
    if func in _PLAIN_EXCEPTIONS or not call.args:
        return
    first = call.args[0]
    is_code = (
        isinstance(first, ast.Constant)
        and isinstance(first.value, str)
        and re.fullmatch(r"[a-z_0-9]+", first.value)
    )
    # AllScenesFailedError builds its code from the scenes' own errors
    if not is_code and func.endswith("Error") and func not in ("_bad", "AllScenesFailedError"):
        shape.sentence_raises.append(f"{where}:{node.lineno}")


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else Path(__file__).resolve().parents[1])
    shape = measure(root)
    biggest = max(shape.modules.items(), key=lambda kv: kv[1])
    print(
        f"architecture: {len(shape.cycles)} cycles, largest module {biggest[0]} ({biggest[1]} lines), "
        f"{len(shape.long_functions)} functions > 100 lines, {shape.core_any} core Any parameters, "
        f"{len(shape.flag_messages)} flag messages, {len(shape.sentence_raises)} sentence raises"
    )
    for problem in shape.problems():
        print("  " + problem)
    return 1 if shape.problems() else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
