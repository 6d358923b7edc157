"""adgen's imports run one way, down the floors of docs/architecture.md, with no cycles; the check
that says so catches what it should."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO
from tests.import_layers import DOC, Floors, imports_table, module_graph, problems, table_region


def test_adgen_imports_go_down_the_floors_with_no_cycles() -> None:
    assert problems(module_graph(), Floors.read()) == []


def test_the_documented_imports_table_is_the_code_s() -> None:
    text = DOC.read_text(encoding="utf-8")
    start, end = table_region(text)
    assert text[start:end] == imports_table(module_graph(), Floors.read()) + "\n", (
        "run python -m tests.import_layers --write")


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    """Each module of adgen imports (the command-line entry point aside), so none depends on
    another having been imported first."""
    names = sorted(m for m in module_graph().modules if m != "adgen.__main__")
    script = ("import importlib, sys\n"
              "for name in sys.argv[1:]:\n"
              "    importlib.import_module(name)\n")
    done = subprocess.run([sys.executable, "-c", script, *names], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _package(tmp_path: Path, files: dict[str, str], layers: str) -> list[str]:
    """The problems the check finds in a made-up ``adgen`` package with these floors."""
    root = tmp_path / "adgen"
    for name, code in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(code), encoding="utf-8")
    doc = tmp_path / "architecture.md"
    doc.write_text(f"# floors\n\n```layers\n{textwrap.dedent(layers).strip()}\n```\n",
                   encoding="utf-8")
    return problems(module_graph(root), Floors.read(doc), doc)


LAYERS = """
    top: adgen adgen.pipeline
    upper: adgen.experiments
    middle: adgen.spec
    bottom: adgen.errors adgen.experiments.hashing
"""


def test_an_upward_import_is_named_with_its_line(tmp_path: Path) -> None:
    found = _package(tmp_path, {
        "errors.py": "",
        "spec.py": "from adgen.errors import x\n",
        "pipeline.py": "import adgen.spec\n",
        "experiments/__init__.py": "",
        "experiments/hashing.py": "\n\ndef f():\n    from adgen.spec import y\n",
    }, LAYERS)
    assert len(found) == 1
    assert found[0].endswith(
        "adgen/experiments/hashing.py:4: adgen.experiments.hashing (bottom) imports adgen.spec "
        f"(middle): imports go down the floors of {tmp_path / 'architecture.md'}")


def test_a_package_init_sits_on_its_lowest_module_s_floor(tmp_path: Path) -> None:
    """spec imports the base module hashing: importing it runs experiments/__init__, which
    must not import the package's upper modules (they import spec)."""
    found = _package(tmp_path, {
        "errors.py": "", "spec.py": "from adgen.experiments.hashing import h\n",
        "pipeline.py": "",
        "experiments/__init__.py": "from adgen.experiments.analysis import analyze\n",
        "experiments/hashing.py": "", "experiments/analysis.py": "from adgen import spec\n",
    }, LAYERS)
    assert [p.split(": ", 1)[1] for p in found] == [
        "adgen.experiments (bottom) imports adgen.experiments.analysis (upper): imports go "
        f"down the floors of {tmp_path / 'architecture.md'}"]


def test_a_cycle_is_found_even_inside_functions_and_modules_need_a_floor(
    tmp_path: Path,
) -> None:
    found = _package(tmp_path, {
        "errors.py": "", "spec.py": "", "pipeline.py": "",
        "experiments/__init__.py": "",
        "experiments/analysis.py": "from adgen.experiments.refresh import decide\n",
        "experiments/refresh.py": "def decide():\n    from . import analysis\n",
        "loose.py": "",
    }, LAYERS.replace(" adgen.experiments.hashing", ""))
    assert "adgen.loose: on no floor; add it (or its package) to the layers block of " \
        f"{tmp_path / 'architecture.md'}" in found
    assert ("import cycle: adgen.experiments.analysis -> adgen.experiments.refresh -> "
            "adgen.experiments.analysis") in found
    assert len(found) == 2


def test_a_unit_of_the_floors_that_is_no_module_is_named(tmp_path: Path) -> None:
    found = _package(tmp_path, {"errors.py": "", "spec.py": "", "pipeline.py": ""}, LAYERS)
    assert sorted(found) == [
        f"{tmp_path / 'architecture.md'}: adgen.experiments in the layers block is no module",
        f"{tmp_path / 'architecture.md'}: adgen.experiments.hashing in the layers block is no "
        "module"]
