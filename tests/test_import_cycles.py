"""No module of canfvc_codec imports a module that imports it back (tools/import_cycles.py)."""

from __future__ import annotations

from tests.conftest import REPO, tool_module


def _checker():
    return tool_module("import_cycles")


def test_the_package_has_no_import_cycles():
    checker = _checker()
    assert checker.cycles(checker.import_graph(REPO / "canfvc_codec")) == []


def test_cycles_through_function_level_and_relative_imports_are_found(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")
    (package / "c.py").write_text("import pkg.a\ng = 1\n")
    (package / "d.py").write_text("from pkg import a\n")  # imports into the cycle, not part of it
    checker = _checker()
    assert checker.cycles(checker.import_graph(package)) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    assert checker.main([str(package)]) == 1


def test_the_product_does_not_import_the_lab():
    """The wheel leaves canfvc_codec.lab out (setup.cfg): nothing else may need it."""
    checker = _checker()
    graph = checker.import_graph(REPO / "canfvc_codec")
    lab = "canfvc_codec.lab"
    needing = {
        module: sorted(name for name in imported if name.startswith(lab))
        for module, imported in graph.items()
        if not module.startswith(lab)
    }
    assert {module: names for module, names in needing.items() if names} == {}
