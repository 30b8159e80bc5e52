"""cifarlib as users get it: its wheel built from this checkout, and fresh virtual environments to install it into.

Used by ``test_installed.py`` (a plain venv with only the wheel's declared dependencies) and ``test_colab.py``
(a venv pinned to Colab's versions). Building and installing TensorFlow take minutes, so the wheel is built once
per test session, each environment is made once per session, and pip's cache is used.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
# What TensorFlow's C++ start-up lines look like (absl's prefix, its severity-dated lines, oneDNN and CUDA notices).
TENSORFLOW_LOG_LINE = re.compile(
    r"absl::InitializeLog|^[IWE]\d{4} \d\d:\d\d|oneDNN|cuda drivers|cuInit", re.MULTILINE
)
_built: dict[str, Path] = {}


def built_wheel(tmp_path_factory) -> Path:
    """The wheel ``python -m build`` makes (from the sdist it makes first), built once per session."""
    if "wheel" not in _built:
        out = tmp_path_factory.mktemp("dist")
        run_checked([sys.executable, "-m", "build", "--outdir", str(out), str(CHECKOUT)], env=developer_env())
        (_built["wheel"],) = out.glob("cifarlib-*.whl")
        (_built["sdist"],) = out.glob("cifarlib-*.tar.gz")
    return _built["wheel"]


def built_sdist(tmp_path_factory) -> Path:
    built_wheel(tmp_path_factory)
    return _built["sdist"]


def create_venv(python: str, path: Path, *pip_arguments: str) -> Path:
    """A new virtual environment at ``path`` with ``pip install <pip_arguments>`` done; returns its ``bin/``."""
    run_checked([python, "-m", "venv", str(path)], env=developer_env())
    if pip_arguments:
        pip_install(path / "bin", *pip_arguments)
    return path / "bin"


def pip_install(bin_dir: Path, *arguments: str) -> None:
    run_checked([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *arguments], env=developer_env())


def installed_versions(bin_dir: Path, names) -> dict[str, str | None]:
    """``{name: version}`` of distributions in the environment (``None`` where one is not installed)."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def v(n):\n    try: return m.version(n)\n    except m.PackageNotFoundError: return None\n"
        "print(json.dumps({n: v(n) for n in sys.argv[1:]}))"
    )
    import json

    # -I: isolated, so that the current folder (a checkout, with its cifarlib.egg-info) is not on the path.
    answer = run_checked([str(bin_dir / "python"), "-I", "-c", code, *names], env=developer_env())
    return json.loads(answer.stdout)


def developer_env() -> dict[str, str]:
    """This process's environment (pip's settings and cache) without the checkout on the path."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def user_env(bin_dir: Path, home: Path, **extra: str) -> dict[str, str]:
    """A new user's environment: only the venv and the system's tools on PATH, an empty home, nothing else."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
        **extra,
    }


def run_checked(command, **kwargs) -> subprocess.CompletedProcess:
    """Run ``command``; on failure, fail with its output (the last lines of both streams)."""
    answer = subprocess.run([str(part) for part in command], capture_output=True, text=True, **kwargs)
    if answer.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, command))} exited {answer.returncode}\n"
            f"--- stdout\n{answer.stdout[-4000:]}\n--- stderr\n{answer.stderr[-4000:]}"
        )
    return answer
