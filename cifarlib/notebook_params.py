"""The one place where small parameters for CI reach the notebooks, without editing them.

Each notebook's ``parameters`` cell holds its defaults as plain assignments (papermill injects its values
after that cell). The next cell calls ``notebook_parameters("03_train", preset=preset, ...)``, which returns
those values, overridden by the JSON file named in ``$CIFARLIB_NOTEBOOK_PARAMS`` when that variable is set:
``{"*": {...for every notebook...}, "03_train": {...for one...}}``. CI sets it (see ``tests/conftest.py``) so that
``pytest --nbval`` runs the notebooks on tiny data; nobody else needs it. Keys a notebook does not have are
ignored, and the file wins over papermill's values too, so keep only size knobs (data, epochs, width) in it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

ENV_VARIABLE = "CIFARLIB_NOTEBOOK_PARAMS"


def notebook_parameters(notebook: str, **values) -> SimpleNamespace:
    """The notebook's parameter values, with the CI overrides applied where ``$CIFARLIB_NOTEBOOK_PARAMS`` is set."""
    path = os.environ.get(ENV_VARIABLE)
    if path:
        try:
            overrides = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{ENV_VARIABLE}={path}: expected a readable JSON file ({error})") from error
        for section in ("*", notebook):
            values.update({k: v for k, v in overrides.get(section, {}).items() if k in values})
    return SimpleNamespace(**values)
