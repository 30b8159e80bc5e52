"""Facts about cifarlib itself, each read from its one place: where its notebooks are, and its repository.

The notebooks live in the repository's top-level ``notebooks/`` folder and are shipped inside the package as
``cifarlib/notebooks`` (see ``pyproject.toml``), so an installed copy has them too. The repository's address
is ``pyproject.toml``'s ``project.urls`` (an installed copy reads it from its metadata); the notebooks' Colab
badges and their setup cell (``notebooks/build/setup_cell.py``, with ``{repository}`` where the address goes) are
built from it, so publishing under another name is a one-line change.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import re
from pathlib import Path

PACKAGE = "cifarlib"
CHECKOUT = Path(__file__).resolve().parent.parent
URL_LABEL = "Repository"
SETUP_CELL = "setup_cell.py"
REPOSITORY_PLACEHOLDER = "{repository}"
# The environment variable through which tests make the setup cell install a built wheel instead of the repository.
SETUP_SOURCE_VARIABLE = "CIFARLIB_SETUP_SOURCE"


def notebooks_dir() -> Path:
    """The notebooks: the package's own copy where cifarlib is installed, else the checkout's ``notebooks/``."""
    installed = importlib.resources.files(PACKAGE) / "notebooks"
    if installed.is_dir():
        return Path(str(installed))
    return CHECKOUT / "notebooks"


NOTEBOOK_NAMES = ("00_gpu_check", "01_drive", "02_explore_data", "03_train", "04_results")


def copy_notebooks(folder: str | Path, *, overwrite: bool = False) -> list[Path]:
    """Copy the five notebooks into ``folder`` (made if missing); returns the paths written or already equal.

    A file of the same name with other contents is someone's work: it is kept, and ``FileExistsError`` names
    it, unless ``overwrite``. Nothing is written until every name has been checked.
    """
    import shutil

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder (the notebooks go into a folder)")
    sources = [notebooks_dir() / f"{name}.ipynb" for name in NOTEBOOK_NAMES]
    targets = [folder / source.name for source in sources]
    if not overwrite:
        changed = [t for s, t in zip(sources, targets) if t.exists() and t.read_bytes() != s.read_bytes()]
        if changed:
            raise FileExistsError(
                f"{changed[0]}: a notebook of that name with other contents is already there; "
                "use another folder, or --overwrite (overwrite=True) to replace it"
            )
    folder.mkdir(parents=True, exist_ok=True)
    for source, target in zip(sources, targets):
        temporary = target.with_name(f".{target.name}.partial")
        shutil.copyfile(source, temporary)
        temporary.replace(target)  # whole or not at all, even if the copy is interrupted
    return targets


def repository_url() -> str:
    """The repository's address, from ``pyproject.toml`` in a checkout, else from the installed metadata."""
    pyproject = CHECKOUT / "pyproject.toml"
    if pyproject.is_file():
        return _url_from_pyproject(pyproject.read_text())
    for entry in importlib.metadata.metadata(PACKAGE).get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip() == URL_LABEL:
            return url.strip()
    raise LookupError(f"the installed {PACKAGE} metadata has no Project-URL labelled {URL_LABEL!r}")


def colab_url(notebook: str) -> str:
    """The address that opens ``notebooks/<notebook>`` from the repository in Colab (GitHub repositories only)."""
    match = re.fullmatch(r"https://github\.com/([^/]+/[^/]+?)(\.git)?/?", repository_url())
    if match is None:
        raise ValueError(f"{repository_url()}: Colab opens notebooks from GitHub repositories only")
    return f"https://colab.research.google.com/github/{match.group(1)}/blob/main/notebooks/{notebook}"


def setup_cell_source() -> str:
    """The notebooks' shared setup cell, with the repository's address filled in (in a checkout: the wheel
    ships the notebooks built from it, not the template)."""
    template = (CHECKOUT / "notebooks" / "build" / SETUP_CELL).read_text()
    return template.replace(REPOSITORY_PLACEHOLDER, repository_url()).rstrip("\n")


def _url_from_pyproject(text: str) -> str:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: one line of TOML needs no parser.
        match = re.search(rf'^{URL_LABEL}\s*=\s*"([^"]+)"', text, re.MULTILINE)
        if match is None:
            raise LookupError(f'pyproject.toml: no {URL_LABEL} = "..." under [project.urls]') from None
        return match.group(1)
    return tomllib.loads(text)["project"]["urls"][URL_LABEL]
