"""The committed notebooks are exactly what the template script writes, so their shared cells stay identical."""

import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest

FOLDER = Path(__file__).resolve().parents[1] / "notebooks"


def load_template():
    spec = importlib.util.spec_from_file_location("build_notebooks", FOLDER / "build" / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up in sys.modules while the module executes.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


TEMPLATE = load_template()


@pytest.mark.parametrize("notebook", TEMPLATE.NOTEBOOKS, ids=lambda n: n.name)
def test_committed_notebook_is_the_template_output(notebook):
    committed = (FOLDER / f"{notebook.name}.ipynb").read_text()
    assert committed == TEMPLATE.render(notebook), (
        f"{notebook.name}.ipynb differs from notebooks/build_notebooks.py: run `make notebooks`"
    )


def test_shared_cells_are_identical():
    setup = TEMPLATE.setup_source()
    assert setup.startswith("# Setup:") and 'find_spec("cifarlib") is None' in setup
    notebooks = [nbformat.read(FOLDER / f"{n.name}.ipynb", as_version=4) for n in TEMPLATE.NOTEBOOKS]
    assert len(notebooks) == 5
    for notebook in notebooks:
        cells = notebook.cells
        assert cells[1].source == TEMPLATE.SETUP_TEXT
        assert cells[2].source == setup
        assert cells[3].source == "**Imports.**"
        assert cells[6].metadata["tags"] == ["parameters"]
        assert cells[7].source == TEMPLATE.SETTINGS_TEXT
        assert cells[8].source.startswith("params = cifarlib.notebook_parameters(")


def test_check_mode_reports_a_stale_notebook(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(TEMPLATE, "FOLDER", tmp_path)
    assert TEMPLATE.main(["--check"]) == 1  # nothing written yet: all five differ
    assert not list(tmp_path.glob("*.ipynb"))
    assert TEMPLATE.main([]) == 0 and len(list(tmp_path.glob("*.ipynb"))) == 5
    assert TEMPLATE.main(["--check"]) == 0
    capsys.readouterr()
