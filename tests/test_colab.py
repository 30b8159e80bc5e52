"""A Colab stand-in: the five notebooks run the way Colab runs them, on Colab's own package versions.

A virtual environment on Python 3.13 holds Colab's TensorFlow, Keras, NumPy, pandas, matplotlib and ipykernel
(``COLAB_PINS``) and a stand-in ``google.colab`` (``tests/colab_standin``) whose ``drive.mount`` links
``/content/drive`` to a local folder. Each notebook is copied into an empty folder, as Colab opens it, and run
by papermill on that environment's kernel with its default workspace (Google Drive). The first setup cell
installs cifarlib from the built wheel (``$CIFARLIB_SETUP_SOURCE``, which only tests set) in place of the
repository; afterwards, every pinned package must still have Colab's version.
Skipped where Python 3.13 is missing.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import venvs

from cifarlib.project import SETUP_SOURCE_VARIABLE

pytestmark = pytest.mark.installed

# Colab's published versions (Python 3.13, TensorFlow 2.20, Keras 3.13.2, NumPy 2.1.3, pandas 2.2.3,
# matplotlib 3.10, ipykernel 6.17), the first release of a series where only the series is known, and older
# pillow and psutil than pip would pick: these are requirements.txt's lower bounds, so each bound is a version
# this test runs on (test_lower_bounds_are_the_colab_pins keeps them equal).
COLAB_PINS = {
    "tensorflow": "2.20.0",
    "keras": "3.13.2",
    "numpy": "2.1.3",
    "pandas": "2.2.3",
    "matplotlib": "3.10.0",
    "ipykernel": "6.17.1",
    "pillow": "11.3.0",
    "psutil": "5.9.5",
}
COLAB_PYTHON = "3.13"
NOTEBOOKS = ["00_gpu_check", "01_drive", "02_explore_data", "03_train", "04_results"]
MOUNT_POINT = Path("/content/drive")
KERNEL = "colab-standin"
STANDIN = Path(__file__).resolve().parent / "colab_standin"


def find_python() -> str | None:
    """A Python 3.13 interpreter: ``$CIFARLIB_COLAB_PYTHON``, ``python3.13`` on PATH, or one pyenv installed."""
    candidates = [os.environ.get("CIFARLIB_COLAB_PYTHON"), shutil.which(f"python{COLAB_PYTHON}")]
    candidates += sorted(
        glob.glob(os.path.expanduser(f"~/.pyenv/versions/{COLAB_PYTHON}*/bin/python{COLAB_PYTHON}"))
    )
    for candidate in filter(None, candidates):
        answer = subprocess.run(
            [candidate, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if answer.returncode == 0 and answer.stdout.strip() == COLAB_PYTHON:
            return candidate
    return None


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """The stand-in runtime: its bin/ folder, with a Jupyter kernel named ``colab-standin`` for papermill."""
    python = find_python()
    if python is None:
        pytest.skip(
            f"the Colab stand-in needs Python {COLAB_PYTHON} (set $CIFARLIB_COLAB_PYTHON, or install python{COLAB_PYTHON})"
        )
    if MOUNT_POINT.exists() and not MOUNT_POINT.is_symlink():
        pytest.skip(f"{MOUNT_POINT} exists on this machine; the stand-in Drive mount would not replace it")
    created = not MOUNT_POINT.parent.exists()
    try:
        MOUNT_POINT.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        pytest.skip(f"the stand-in Drive mount needs {MOUNT_POINT.parent} ({error})")
    root = tmp_path_factory.mktemp("colab")
    bin_dir = venvs.create_venv(
        python, root / "venv", *(f"{name}=={version}" for name, version in COLAB_PINS.items())
    )
    site = venvs.run_checked(
        [bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    )
    Path(site.stdout.strip(), "google_colab_standin.pth").write_text(f"{STANDIN}\n")
    kernel = root / "jupyter" / "kernels" / KERNEL
    kernel.mkdir(parents=True)
    spec = {
        "argv": [str(bin_dir / "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab stand-in",
        "language": "python",
    }
    (kernel / "kernel.json").write_text(json.dumps(spec))
    yield root, bin_dir
    if MOUNT_POINT.is_symlink():
        MOUNT_POINT.unlink()
    if created and not any(MOUNT_POINT.parent.iterdir()):
        MOUNT_POINT.parent.rmdir()


def test_lower_bounds_are_the_colab_pins():
    bounds = {}
    for line in (venvs.CHECKOUT / "requirements.txt").read_text().splitlines():
        if ">=" in line and not line.startswith("#"):
            name, rest = line.split(">=")
            bounds[name.strip().lower()] = rest.split(",")[0].strip()
    assert {name: bounds.get(name) for name in COLAB_PINS} == COLAB_PINS


def test_the_five_notebooks_run_as_in_colab(colab, tmp_path_factory, tmp_path):
    root, bin_dir = colab
    before = venvs.installed_versions(bin_dir, COLAB_PINS)
    assert venvs.installed_versions(bin_dir, ["cifarlib"]) == {"cifarlib": None}
    wheel = venvs.built_wheel(tmp_path_factory)
    archive = tmp_path / "cifar-10-python.tar.gz"
    from cifarlib.testing import write_cifar10_archive

    write_cifar10_archive(archive, images_per_batch=40, test_images=40)
    parameters = tmp_path / "notebook_params.json"
    # Small data and a short run; no workspace, so that the notebooks use Drive, as in Colab.
    parameters.write_text(json.dumps({"*": {"data": str(archive)}, "03_train": {"epochs": 2, "width": 0.25}}))
    drive = tmp_path / "drive"
    content = tmp_path / "content"
    content.mkdir()
    env = venvs.user_env(
        Path(sys.executable).parent,
        tmp_path / "home",
        JUPYTER_PATH=str(root / "jupyter"),
        CIFARLIB_NOTEBOOK_PARAMS=str(parameters),
        COLAB_STANDIN_DRIVE=str(drive),
        CIFARLIB_CACHE=str(tmp_path / "cache"),
        **{SETUP_SOURCE_VARIABLE: str(wheel)},
    )
    # pip inside the notebook reaches the same indexes and cache as this process's pip.
    env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})
    env["XDG_CACHE_HOME"] = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    for name in NOTEBOOKS:
        shutil.copy(venvs.CHECKOUT / "notebooks" / f"{name}.ipynb", content)
        venvs.run_checked(
            [
                sys.executable,
                "-m",
                "papermill",
                "-k",
                KERNEL,
                "--cwd",
                content,
                f"{name}.ipynb",
                f"{name}.out.ipynb",
            ],
            cwd=content,
            env=env,
        )
        outputs = json.dumps(
            [c.get("outputs", []) for c in json.loads((content / f"{name}.out.ipynb").read_text())["cells"]]
        )
        assert not venvs.TENSORFLOW_LOG_LINE.search(outputs), f"{name}: TensorFlow log lines in its outputs"
    assert venvs.installed_versions(bin_dir, COLAB_PINS) == before, "the setup cell changed a Colab package"
    installed = venvs.installed_versions(bin_dir, ["cifarlib", "papermill", "humanize", "GPUtil"])
    assert all(installed.values()), installed
    (run_dir,) = (drive / "MyDrive" / "cifarlib" / "runs").iterdir()
    assert json.loads((run_dir / "summary.json").read_text())["epochs_run"] == 2, (
        "03_train trained on the Drive"
    )
    assert any(run_dir.glob("plots/*.png")), "04_results plotted the run"
