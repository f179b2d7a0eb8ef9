"""Find, by reading the source (AST, nothing is run), every program the code hands to a subprocess:
the argv[0] of each call of the choke point (``lab.host.shell`` run/spawn/replace_process), of
direct ``subprocess``/``os.exec*`` calls, of a backend's ``exec``/``spawn``/``node_argv`` and of the
Lab handle's ``exec``/``spawn`` (which
wrap argv in ``nsenter``), plus the programs behind wrappers in the argv itself (``env VAR=..``,
``timeout N``, ``ip netns exec NS``, anything after ``--``: nsenter, unshare, ``teleradlab exec``).

argv is followed through what is written with constants: list displays, ``*`` expansions, names
bound to lists or strings in the function or module, ``+``, ``list()``/``str()``, functions of
the same source tree that return an argv (their parameters bound to the call's arguments), and
helpers that pass their parameters on into a subprocess (inlined at each call site).
``sys.executable`` is python3; ``mapping["name"]`` is the program of that name. What cannot be
followed (a path chosen at run time) is reported as unresolved, by site.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output"}
SHELL_CALLS = {"run", "spawn", "replace_process"}
SHELL_MODULE = "lab.host.shell"
BACKEND_METHODS = {"exec", "spawn", "node_argv"}
LAB_METHODS = {"exec", "spawn"}  # the Lab handle's: (node, argv)
MAX_DEPTH = 6


class Param:
    """A value that comes from a parameter of the function being read (unbound), or lies
    deeper than MAX_DEPTH: either way the call is read elsewhere with what it is given."""


PARAM = Param()


class NodeEntry(str):
    """The ``nsenter`` a backend puts before an argv it runs in a node (``exec``, ``spawn``,
    ``node_argv``): what follows it is a program of the node's own userland (a docker image's)."""


NODE_ENTRY = NodeEntry("nsenter")
Item = str | Param | None  # a constant, a parameter, or unknown


@dataclass
class Module:
    name: str  # dotted (lab.host.shell) or the path for tests
    path: str
    tree: ast.Module
    defs: dict[str, ast.FunctionDef] = field(default_factory=dict)
    imports: dict[str, str] = field(default_factory=dict)  # local name -> dotted target
    assigns: dict[str, ast.expr] = field(default_factory=dict)  # module-level name -> value


@dataclass
class Frame:
    module: Module
    func: ast.FunctionDef | None
    bound: dict[str, list[Item]] = field(default_factory=dict)
    depth: int = 0

    def params(self) -> set[str]:
        if self.func is None:
            return set()
        a = self.func.args
        names = [*a.posonlyargs, *a.args, *a.kwonlyargs, *(x for x in (a.vararg, a.kwarg) if x)]
        return {n.arg for n in names}


@dataclass
class Scan:
    programs: dict[str, set[str]] = field(default_factory=dict)  # name -> sites
    unresolved: set[str] = field(default_factory=set)  # "path::function" sites
    in_nodes: dict[str, set[str]] = field(default_factory=dict)  # name -> sites, run in a node


def load(sources: dict[str, str]) -> dict[str, Module]:
    """Parse ``{path: text}``; module names are dotted for ``lab/`` and ``tests/`` files."""
    modules = {}
    for path, text in sources.items():
        name = path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        mod = Module(name, path, ast.parse(text, path))
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.FunctionDef):
                mod.defs.setdefault(node.name, node)
            elif isinstance(node, ast.ImportFrom) and node.module:
                base = node.module if node.level == 0 else _relative(name, node)
                for a in node.names:
                    mod.imports[a.asname or a.name] = f"{base}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    mod.imports[a.asname or a.name.split(".")[0]] = a.name if a.asname else \
                        a.name.split(".")[0]
        for stmt in mod.tree.body:
            if isinstance(stmt, ast.Assign | ast.AnnAssign) and stmt.value is not None:
                for target in stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]:
                    if isinstance(target, ast.Name):
                        mod.assigns[target.id] = stmt.value
        modules[name] = mod
    return modules


def _relative(name: str, node: ast.ImportFrom) -> str:
    parts = name.split(".")[: -node.level]
    return ".".join([*parts, node.module] if node.module else parts)


class Scanner:
    def __init__(self, modules: dict[str, Module]) -> None:
        self.modules = modules
        self.result = Scan()
        self._runs: dict[int, bool] = {}

    # --- what a call is ---------------------------------------------------------------------

    def target(self, call: ast.Call, frame: Frame) -> tuple[Module, ast.FunctionDef] | None:
        """The function of this source tree that ``call`` calls, if it can be told."""
        f, mod = call.func, frame.module
        if isinstance(f, ast.Name):
            if f.id in mod.defs:
                return mod, mod.defs[f.id]
            return self._imported(mod.imports.get(f.id))
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            if f.value.id in ("self", "cls") and f.attr in mod.defs:
                return mod, mod.defs[f.attr]
            dotted = mod.imports.get(f.value.id)
            if dotted is not None:
                return self._imported(f"{dotted}.{f.attr}")
        return None

    def _imported(self, dotted: str | None) -> tuple[Module, ast.FunctionDef] | None:
        if dotted is None or "." not in dotted:
            return None
        owner, name = dotted.rsplit(".", 1)
        mod = self.modules.get(owner)
        return (mod, mod.defs[name]) if mod is not None and name in mod.defs else None

    def leaf_argv(self, call: ast.Call, frame: Frame) -> list[Item] | None:
        """argv of a call of the choke point, of subprocess, or of a backend (None: not one)."""
        f, mod = call.func, frame.module
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            owner = mod.imports.get(f.value.id, f.value.id)
            if (owner == "subprocess" and f.attr in SUBPROCESS_CALLS) or (
                    owner == SHELL_MODULE and f.attr in SHELL_CALLS):
                return self.items(call.args[0], frame) if call.args else [None]
        elif isinstance(f, ast.Name) and mod.imports.get(f.id) in {
                f"{SHELL_MODULE}.{n}" for n in SHELL_CALLS}:
            return self.items(call.args[0], frame) if call.args else [None]
        if isinstance(f, ast.Attribute) and f.attr in BACKEND_METHODS and len(call.args) >= 3:
            return [NODE_ENTRY, "--", *self.items(call.args[2], frame)]
        if isinstance(f, ast.Attribute) and f.attr in LAB_METHODS and len(call.args) == 2:
            return [NODE_ENTRY, "--", *self.items(call.args[1], frame)]
        return None

    # --- following values -------------------------------------------------------------------

    def items(self, expr: ast.expr, frame: Frame) -> list[Item]:
        """The elements of a list-valued expression, as far as they can be followed."""
        if frame.depth > MAX_DEPTH:
            return [PARAM]  # read at a shallower depth on its own: not unresolved
        if isinstance(expr, ast.List | ast.Tuple):
            out: list[Item] = []
            for elt in expr.elts:
                out += (self.items(elt.value, frame) if isinstance(elt, ast.Starred)
                        else [self.item(elt, frame)])
            return out
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
            return self.items(expr.left, frame) + self.items(expr.right, frame)
        if isinstance(expr, ast.Name):
            if expr.id in frame.bound:
                return frame.bound[expr.id]
            if expr.id in frame.params():
                return [PARAM]
            value = self._assigned(expr.id, frame)
            return self.items(value[0], value[1]) if value else [None]
        if isinstance(expr, ast.Call):
            if isinstance(expr.func, ast.Name) and expr.func.id in ("list", "tuple") and expr.args:
                return self.items(expr.args[0], frame)
            leaf = self.leaf_argv(expr, frame) if _is_node_argv(expr) else None
            if leaf is not None:
                return leaf
            found = self.target(expr, frame)
            if found is not None:
                inner = self.bind(expr, frame, *found)
                returns = [r.value for r in ast.walk(found[1])
                           if isinstance(r, ast.Return) and r.value is not None]
                return self.items(returns[0], inner) if returns else [None]
        if isinstance(expr, ast.IfExp):
            return self.items(expr.body, frame)
        return [None]

    def item(self, expr: ast.expr, frame: Frame) -> Item:
        """One element of an argv."""
        if frame.depth > MAX_DEPTH:
            return PARAM
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return expr.value
        if isinstance(expr, ast.JoinedStr):
            head = expr.values[0] if expr.values else None
            if isinstance(head, ast.Constant) and "=" in str(head.value):
                return str(head.value).split("=", 1)[0] + "=..."  # env's VAR=...
            return None
        if isinstance(expr, ast.Attribute) and expr.attr in ("executable", "PYTHON"):
            return "python3"  # sys.executable; the docker image's interpreter
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) \
                and expr.value.id == "self":
            value = self._self_attribute(expr.attr, frame)
            return self.item(value, Frame(frame.module, None, {}, frame.depth + 1)) \
                if value is not None else None
        if isinstance(expr, ast.Subscript) and isinstance(expr.slice, ast.Constant) \
                and isinstance(expr.slice.value, str):
            return expr.slice.value  # tools["storescu"]: the program of that name
        if isinstance(expr, ast.Name):
            if expr.id in frame.bound:
                bound = frame.bound[expr.id]
                return bound[0] if len(bound) == 1 else None
            if expr.id in frame.params():
                return PARAM
            value = self._assigned(expr.id, frame)
            return self.item(value[0], value[1]) if value else None
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) \
                and expr.func.id in ("str", "Path") and expr.args:
            return self.item(expr.args[0], frame)
        if isinstance(expr, ast.Call) and expr.args and _name_of(expr.func).endswith("_tool"):
            return self.item(expr.args[0], frame)  # dcmtk_tool("storescu")
        if isinstance(expr, ast.Call) and _name_of(expr.func).endswith("_binary"):
            return _name_of(expr.func).removesuffix("_binary")  # charon_binary()
        if isinstance(expr, ast.Call) and _name_of(expr.func) == "locate" and expr.args:
            return self.item(expr.args[0], frame)  # programs.locate(BY_NAME["gcc"])
        if isinstance(expr, ast.Call) and (found := self.target(expr, frame)) is not None:
            returns = [r.value for r in ast.walk(found[1])
                       if isinstance(r, ast.Return) and r.value is not None]
            return self.item(returns[0], self.bind(expr, frame, *found)) if returns else None
        return None

    def _self_attribute(self, name: str, frame: Frame) -> ast.expr | None:
        """The value of the first ``self.name = ...`` in the module."""
        for node in ast.walk(frame.module.tree):
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Attribute) and t.attr == name
                    and isinstance(t.value, ast.Name) and t.value.id == "self"
                    for t in node.targets):
                return node.value
        return None

    def _assigned(self, name: str, frame: Frame) -> tuple[ast.expr, Frame] | None:
        if frame.func is not None:
            for node in ast.walk(frame.func):
                if isinstance(node, ast.Assign) and any(
                        isinstance(t, ast.Name) and t.id == name for t in node.targets):
                    return node.value, Frame(frame.module, frame.func, frame.bound,
                                             frame.depth + 1)
        if name in frame.module.assigns:
            return frame.module.assigns[name], Frame(frame.module, None, {}, frame.depth + 1)
        return None

    def bind(self, call: ast.Call, frame: Frame, mod: Module, func: ast.FunctionDef) -> Frame:
        """A frame of ``func`` with its parameters bound to ``call``'s arguments."""
        a = func.args
        names = [p.arg for p in (*a.posonlyargs, *a.args)]
        if names and names[0] in ("self", "cls"):
            names = names[1:]
        bound: dict[str, list[Item]] = {n: [None] for n in (*names, *(k.arg for k in a.kwonlyargs))}
        extra: list[Item] = []
        for i, arg in enumerate(call.args):
            value = (self.items(arg.value, frame) if isinstance(arg, ast.Starred)
                     else [self.item(arg, frame)])
            whole = self.items(arg, frame) if isinstance(arg, ast.List | ast.Tuple | ast.Name |
                                                         ast.BinOp | ast.Call) else value
            if i < len(names) and not isinstance(arg, ast.Starred):
                bound[names[i]] = whole if whole != [None] else value
            else:
                extra += value
        for kw in call.keywords:
            if kw.arg is not None:
                bound[kw.arg] = [self.item(kw.value, frame)]
        if a.vararg is not None:
            bound[a.vararg.arg] = extra
        return Frame(mod, func, bound, frame.depth + 1)

    # --- the scan ---------------------------------------------------------------------------

    def calls_in(self, frame: Frame) -> Iterator[tuple[list[Item], str]]:
        """argv of every subprocess ``frame``'s function starts, helpers inlined, each with the
        site (``path::function``) of the call that starts it."""
        body = frame.func if frame.func is not None else frame.module.tree
        for node in _own_nodes(body):
            if not isinstance(node, ast.Call) or frame.depth > MAX_DEPTH:
                continue
            leaf = self.leaf_argv(node, frame)
            if leaf is not None:
                yield leaf, _site(frame)
                continue
            found = self.target(node, frame)
            if found is not None and found[1] is not frame.func and self.runs(*found):
                yield from self.calls_in(self.bind(node, frame, *found))

    def runs(self, mod: Module, func: ast.FunctionDef) -> bool:
        """``func`` starts a subprocess itself or through a helper of this tree (memoised)."""
        key = id(func)
        if key not in self._runs:
            self._runs[key] = False  # a recursive helper does not run anything by recursing
            frame = Frame(mod, func)
            self._runs[key] = any(
                self.leaf_argv(n, frame) is not None
                or ((t := self.target(n, frame)) is not None and self.runs(*t))
                for n in _own_nodes(func) if isinstance(n, ast.Call))
        return self._runs[key]

    def scan(self) -> Scan:
        for mod in self.modules.values():
            if mod.name == SHELL_MODULE:
                continue  # the choke point itself: its argv is its caller's
            funcs: list[ast.FunctionDef | None] = [None, *mod.defs.values()]
            for func in funcs:
                for argv, site in self.calls_in(Frame(mod, func)):
                    self.record(argv, site)
        return self.result

    def record(self, argv: list[Item], site: str) -> None:
        names, unresolved = programs_in(argv)
        for name in names:
            self.result.programs.setdefault(name, set()).add(site)
        entries = [i for i, item in enumerate(argv) if isinstance(item, NodeEntry)]
        for name in programs_in(argv[entries[0]:])[0][1:] if entries else ():
            self.result.in_nodes.setdefault(name, set()).add(site)
        if unresolved:
            self.result.unresolved.add(site)


def _name_of(f: ast.expr) -> str:
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _is_node_argv(call: ast.Call) -> bool:
    return isinstance(call.func, ast.Attribute) and call.func.attr == "node_argv"


def _site(frame: Frame) -> str:
    return f"{frame.module.path}::{frame.func.name if frame.func else '<module>'}"


def _own_nodes(body: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a function (or module) body, without those of functions defined in it."""
    todo = list(ast.iter_child_nodes(body))
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.ClassDef):
            todo.extend(n for n in node.body if not isinstance(n, ast.FunctionDef))
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def programs_in(argv: list[Item]) -> tuple[list[str], bool]:
    """The programs an argv runs (argv[0] and those behind wrappers), and whether one of them
    could not be followed (a parameter left unbound is the caller's business, not unresolved)."""
    names: list[str] = []
    pos: int | None = 0
    while pos is not None and pos < len(argv):
        item = argv[pos]
        if isinstance(item, Param):
            return names, False
        if item is None:
            return names, True
        name = os.path.basename(item)
        names.append(name)
        pos = _next_program(name, argv, pos)
    return names, False


def _next_program(name: str, argv: list[Item], pos: int) -> int | None:
    rest = argv[pos + 1:]
    if "--" in rest:
        return pos + 1 + rest.index("--") + 1
    if name == "env":
        j = pos + 1
        while j < len(argv) and isinstance(argv[j], str) and (
                "=" in str(argv[j]) or str(argv[j]).startswith("-")):
            j += 1
        return j
    if name == "timeout":
        j = pos + 1
        while j < len(argv) and isinstance(argv[j], str) and str(argv[j]).startswith("-"):
            j += 1
        return j + 1
    if name == "ip" and rest[:2] == ["netns", "exec"]:
        return pos + 4
    return None


def scan_sources(sources: dict[str, str]) -> Scan:
    return Scanner(load(sources)).scan()


def scan_tree(root: str, folders: tuple[str, ...] = ("lab", "tests")) -> Scan:
    """Every ``.py`` file under ``folders`` of ``root``."""
    sources = {}
    for folder in folders:
        for dirpath, _, files in os.walk(os.path.join(root, folder)):
            for f in files:
                if f.endswith(".py"):
                    path = os.path.join(dirpath, f)
                    with open(path, encoding="utf-8") as fh:
                        sources[os.path.relpath(path, root)] = fh.read()
    return scan_sources(sources)
