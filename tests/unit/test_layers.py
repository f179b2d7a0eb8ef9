"""The import direction of ``lab/`` (shared/design.md, "Layout: one folder per layer"), read from
the source with :mod:`ast` (nothing is imported):

    cli -> bench/report/study -> runtime/probe -> security/wan/dicom -> backends -> host
        -> topology -> model -> errors

A module may import its own package and any lower floor. On a shared floor only the edges of
:data:`SIDEWAYS` are allowed (each one way, so no cycle): a report reads a study's tables, a
benchmark drives studies and reads reports' numbers, and the DICOM node programs use the PKI
and TLS libraries. ``dicom/`` never imports the orchestration: only :data:`DICOM_MAY_IMPORT`;
inside it, :data:`DICOM_FLOORS` (data, then the Upper Layer, then the archive, then the programs).

A function-local import of lab code usually dodges a cycle, which means something sits on the
wrong floor; the only ones kept are on :data:`LAZY_IMPORTS`, each for a stated reason.

Run it alone with ``pytest tests/unit/test_layers.py``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LAB = Path(__file__).resolve().parents[2] / "lab"

#: Floor of each top-level package (and module) of lab/; higher may import lower.
FLOORS = {
    "errors": 0, "": 0,  # "" is lab/__init__.py (the version)
    "model": 1,
    "topology": 2,
    "host": 3,
    "backends": 4,
    "security": 5, "wan": 5, "dicom": 5,
    "runtime": 6,
    "probe": 6,  # validates a real peer: uses the DICOM UL and TLS (5), is drawn by report (7)
    "study": 7, "report": 7, "bench": 7,
    "cli": 8,  # and lab/__main__.py
}

#: The imports allowed between different packages of one floor (importer, imported).
SIDEWAYS = {
    ("report", "study"),  # a report reads the tables a study writes
    ("bench", "study"),  # a benchmark runs studies (the quick sweep)
    ("bench", "report"),
    ("dicom", "security"),  # node programs use the PKI and TLS libraries (see DICOM_MAY_IMPORT)
}

#: What the DICOM node programs may import: they run inside nodes with nothing but their
#: arguments, so nothing of the orchestration (backends, runtime, the IPsec daemon control).
DICOM_MAY_IMPORT = ("lab.errors", "lab.model", "lab.dicom", "lab.security.pki",
                    "lab.security.tls")

#: Floors inside ``dicom/``: the data (encoded datasets, studies, signatures) under the Upper
#: Layer, the UL under the archive, and the programs (``dicom/*.py``: scu, pacs, verify...) on
#: top. The package's ``__init__`` (AE titles, ports) is on the ground floor.
DICOM_FLOORS = {"": 0, "data": 1, "ul": 2, "archive": 3, "programs": 4}

#: Function-local imports of lab code that stay, each deliberate: (module, imported) -> why.
LAZY_IMPORTS = {
    ("lab.dicom.ul.tlsopts", "lab.security.tls.contexts"):
        "node programs run without TLS skip importing ssl and cryptography (start-up time)",
    ("lab.dicom.scu", "lab.dicom.qrscu"):
        "the store SCU (the benchmarks' hot path) does not load the Q/R client (start-up time)",
    ("lab.cli.probe", "lab.probe.probe"):
        "the command line starts without sslyze, nassl and pydicom unless a probe runs (+0.3 s)",
    ("lab.cli.studies", "lab.cli.cluster"):
        "the command line loads distributed (Dask) only for a sweep on a cluster (start-up time)",
}


@dataclass(frozen=True)
class Edge:
    """One import statement's target, as read from the importing module."""

    importer: str  # dotted module name
    imported: str  # dotted module (or package) name
    line: int
    local: bool  # inside a function


def module_name(root: Path, path: Path) -> str:
    """``lab.a.b`` for ``root/a/b.py`` (``root`` is the lab package directory)."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(root: Path, path: Path) -> str:
    """The package a module's relative imports start from."""
    name = module_name(root, path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def targets(node: ast.Import | ast.ImportFrom, package: str, modules: set[str]) -> Iterator[str]:
    """The lab modules (or packages) one import statement loads."""
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names if a.name.split(".")[0] == "lab")
        return
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
    if base.split(".")[0] != "lab":
        return
    found = {}  # `from lab.x import y`: y is a module or a name in lab.x (once per statement)
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        found[sub if sub in modules else base] = None
    yield from found


def edges(root: Path) -> Iterator[Edge]:
    """Every import of lab code in every module under ``root``."""
    files = sorted(root.rglob("*.py"))
    modules = {module_name(root, f) for f in files}
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        yield from _walk(tree, module_name(root, path), package_of(root, path), modules, False)


def _walk(node: ast.AST, importer: str, package: str, modules: set[str],
          local: bool) -> Iterator[Edge]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            for target in targets(child, package, modules):
                yield Edge(importer, target, child.lineno, local)
        inner = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from _walk(child, importer, package, modules, inner)


def layer(module: str) -> str:
    """The top-level package (or module) of lab a module belongs to."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    return "cli" if top == "__main__" else top  # python -m lab: the command line


def dicom_floor(module: str) -> str:
    """Which floor of ``dicom/`` a module of it is on (see DICOM_FLOORS)."""
    parts = module.split(".")[2:]
    if not parts:
        return ""
    return parts[0] if len(parts) > 1 or parts[0] in DICOM_FLOORS else "programs"


def problem(edge: Edge) -> str | None:
    """Why an import breaks the layering, or None."""
    src, dst = layer(edge.importer), layer(edge.imported)
    where = f"{edge.importer}:{edge.line} imports {edge.imported}"
    if src == dst == "dicom" and not edge.local:
        low, high = dicom_floor(edge.importer), dicom_floor(edge.imported)
        if DICOM_FLOORS[high] > DICOM_FLOORS[low]:
            return f"{where}: dicom/{low or '__init__'} may not import dicom/{high}"
    if src not in FLOORS or dst not in FLOORS:
        return f"{where}: add its package to FLOORS in tests/unit/test_layers.py"
    if src == "dicom" and not edge.imported.startswith(DICOM_MAY_IMPORT):
        return f"{where}: the DICOM programs never import the orchestration"
    if edge.local and (edge.importer, edge.imported) not in LAZY_IMPORTS:
        return f"{where} inside a function: import it at the top (a cycle means a wrong floor)"
    if src == dst or FLOORS[dst] < FLOORS[src] or (src, dst) in SIDEWAYS:
        return None
    return f"{where}: {src} (floor {FLOORS[src]}) may not import {dst} (floor {FLOORS[dst]})"


def violations(root: Path) -> list[str]:
    """Every import under ``root`` (a directory named lab) that breaks the layering."""
    return [p for p in map(problem, edges(root)) if p]


def test_imports_point_down_the_layers() -> None:
    found = violations(LAB)
    assert not found, "imports against the layering:\n  " + "\n  ".join(found)


def test_every_allowed_lazy_import_still_exists() -> None:
    lazy = {(e.importer, e.imported) for e in edges(LAB) if e.local}
    assert set(LAZY_IMPORTS) <= lazy, f"stale LAZY_IMPORTS entries: {set(LAZY_IMPORTS) - lazy}"


def test_the_check_names_each_kind_of_violation(tmp_path: Path) -> None:
    """A fake lab tree with one violation of each kind: the check must report all of them."""
    fake = tmp_path / "lab"
    files = {
        "__init__.py": "",
        "errors.py": "",
        "model/__init__.py": "",
        "model/wan.py": "from lab.runtime import lifecycle\n",  # up four floors
        "runtime/__init__.py": "",
        "runtime/lifecycle.py": "def up():\n    from lab.host import shell\n",  # local
        "host/__init__.py": "",
        "host/shell.py": "import lab.errors\n",  # fine
        "wan/__init__.py": "",
        "wan/apply.py": "from ..security import plan\n",  # sideways, relative
        "security/__init__.py": "",
        "security/plan.py": "from lab.model import wan\n",  # fine
        "dicom/__init__.py": "",
        "dicom/scu.py": "from lab.backends import base\n",  # orchestration
        "dicom/data/__init__.py": "",
        "dicom/data/encoded.py": "from lab.dicom.ul import pdu\n",  # up inside dicom
        "dicom/ul/__init__.py": "",
        "dicom/ul/pdu.py": "from lab.dicom.data import encoded\n",  # fine
        "gadgets/__init__.py": "from lab import errors\n",  # not on any floor
    }
    for name, text in files.items():
        (fake / name).parent.mkdir(parents=True, exist_ok=True)
        (fake / name).write_text(text)
    found = violations(fake)
    expected = ["lab.model.wan:1 imports lab.runtime.lifecycle: model (floor 1)",
                "lab.runtime.lifecycle:2 imports lab.host.shell inside a function",
                "lab.wan.apply:1 imports lab.security.plan: wan (floor 5)",
                "lab.dicom.scu:1 imports lab.backends: the DICOM programs never",
                "lab.dicom.data.encoded:1 imports lab.dicom.ul.pdu: dicom/data may not import",
                "lab.gadgets:1 imports lab.errors: add its package to FLOORS"]
    for start in expected:
        assert any(f.startswith(start) for f in found), (start, found)
    assert len(found) == len(expected), found
