"""Layout rules of the package: no import cycles in ``restore/``; the library imports neither Prefect
(an extra) nor MONAI (a test dependency); without the extra, `restore batch` says how to install it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """``module -> modules of package it imports`` from every import statement (also inside functions).

    ``from a.b import c`` counts as importing ``a.b.c`` when that is a module, else ``a.b``.
    """
    paths = {module_name(p, root): p for p in (root / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        is_package = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base for alias in node.names]
            else:
                continue
            edges |= {t for t in targets if t in paths and t != name}
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_sees_a_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from pkg import a\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    assert cycles(import_graph(tmp_path, "pkg")) == [["pkg.a", "pkg.b"]]


def test_restore_has_no_import_cycles():
    graph = import_graph(ROOT, "restore")
    assert "restore.api" in graph and graph["restore.mri.pipeline"], "the graph missed modules or imports"
    assert cycles(graph) == []


def test_library_imports_neither_prefect_nor_monai():
    """The API, both pipelines, the CLI and every shipped model load without Prefect (an extra) or MONAI."""
    code = ("import sys; import restore.api, restore.batch; from restore.cli import build_parser, main; "
            "from restore.audio.pipeline import restore_audio; from restore.mri.pipeline import restore_nifti; "
            "from restore.weights import load_model, shipped_weights; build_parser(); "
            "[load_model(shipped_weights(n)) for n in ('mri_denoise', 'mri_fill', 'audio_denoise', 'audio_inpaint')]; "
            "print(sorted(m for m in ('prefect', 'monai', 'dask', 'flows') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"



def test_flow_commands_without_the_extra_say_how_to_install_it(monkeypatch, capsys):
    from restore.cli import main

    for name in [m for m in sys.modules if m == "flows" or m.startswith("flows.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "prefect", None)  # import prefect now fails as if not installed
    assert main(["batch", "in", "-o", "out"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "restore[flows]" in err and "prefect" in err


def test_readme_layout_lists_every_module():
    text = (ROOT / "README.md").read_text()
    layout = text[text.index("Layout:"):]
    layout = layout[: layout.index("```", layout.index("```") + 3)]
    stems = {p.stem for p in (ROOT / "restore").rglob("*.py") if p.stem not in ("__init__", "__main__")}
    packages = {p.parent.name for p in (ROOT / "restore").rglob("__init__.py")} - {"restore"}
    assert sorted(name for name in stems | packages if name not in layout) == []
