"""Root conftest: loaded for every pytest run (tests/ and notebooks/), so the notebooks' CI parameters exist
before nbval starts their kernels."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config):
    """Small parameters for the notebooks under ``pytest --nbval``: one JSON file, named by one variable.

    The notebooks read it through ``cifarlib.notebook_parameters``; their kernels inherit this process's
    environment, so it must be set here, before nbval starts them.
    """
    import json
    import shutil
    import tempfile

    from cifarlib import testing
    from cifarlib.notebook_params import ENV_VARIABLE

    if os.environ.get(ENV_VARIABLE):
        return
    root = Path(tempfile.mkdtemp(prefix="cifarlib-nbval-"))
    config.add_cleanup(lambda: shutil.rmtree(root, ignore_errors=True))
    archive = testing.write_cifar10_archive(
        root / "cifar-10-python.tar.gz", images_per_batch=40, test_images=40
    )
    parameters = {
        "*": {"workspace": str(root / "workspace"), "data": str(archive)},
        "03_train": {"epochs": 2, "width": 0.25},
    }
    (root / "notebook_params.json").write_text(json.dumps(parameters, indent=2))
    os.environ[ENV_VARIABLE] = str(root / "notebook_params.json")
    os.environ.setdefault("CIFARLIB_CACHE", str(root / "cache"))
    os.environ.setdefault("CIFARLIB_STAGING", str(root / "staging"))
