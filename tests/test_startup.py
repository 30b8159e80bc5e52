"""Start-up: importing cifarlib, ``--help``, ``runs`` and ``report`` import no TensorFlow, and TensorFlow's own
start-up lines are kept out of sight unless its import fails. Also the facts read from one place (project.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import tomllib

from cifarlib import project, quiet

CHECKOUT = project.CHECKOUT


def imported_modules(*arguments: str, tmp_path) -> set[str]:
    """The modules ``python -X importtime <arguments>`` imported (run from an empty folder)."""
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT), "CIFARLIB_HOME": str(tmp_path / "workspace")}
    answer = subprocess.run(
        [sys.executable, "-X", "importtime", *arguments],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert answer.returncode == 0, answer.stderr[-2000:]
    return set(re.findall(r"^import time:.*\|\s*(\S+)\s*$", answer.stderr, re.MULTILINE))


@pytest.mark.parametrize(
    "arguments",
    [
        ["-c", "import cifarlib"],
        ["-m", "cifarlib", "--help"],
        ["-m", "cifarlib", "runs"],
        ["-m", "cifarlib", "report"],
    ],
    ids=["import", "help", "runs", "report"],
)
def test_no_tensorflow_where_it_is_not_needed(arguments, tmp_path):
    modules = imported_modules(*arguments, tmp_path=tmp_path)
    assert "cifarlib" in modules
    assert not {"tensorflow", "keras", "jax"} & modules


def test_public_names_load_on_first_use(tmp_path):
    code = "import sys, cifarlib; cifarlib.build_inception; print('keras' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert answer.stdout.strip() == "True"
    # A submodule by attribute, in a process where nothing else has loaded importlib.util: -S, as site's .pth
    # files (setuptools') may load it. cifarlib.formatting needs only the standard library.
    code = "import sys; assert 'importlib.util' not in sys.modules; import cifarlib; print(cifarlib.formatting.__name__)"
    answer = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env)
    assert answer.stdout.strip() == "cifarlib.formatting", answer.stderr
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        import cifarlib

        cifarlib.no_such_name  # noqa: B018


def test_tensorflow_import_is_silent_in_a_fresh_process():
    env = {k: v for k, v in os.environ.items() if k != quiet.LOG_LEVEL_VARIABLE}
    env["PYTHONPATH"] = str(CHECKOUT)
    answer = subprocess.run(
        [sys.executable, "-c", "import cifarlib, tensorflow as tf; print(int(tf.constant(2) + 1))"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert answer.returncode == 0 and answer.stdout.strip() == "3"
    assert answer.stderr == "", answer.stderr[:2000]


def test_captured_stderr_is_replayed_when_the_import_fails(capfd):
    with quiet.captured_stderr_fd():
        os.write(2, b"hidden start-up line\n")
    assert capfd.readouterr().err == ""
    with pytest.raises(ImportError), quiet.captured_stderr_fd():
        os.write(2, b"why the library failed to load\n")
        raise ImportError("broken installation")
    assert capfd.readouterr().err == "why the library failed to load\n"


def test_repository_address_and_colab_links_come_from_pyproject():
    url = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    assert project.repository_url() == url
    owner_and_name = url.removeprefix("https://github.com/")
    assert project.colab_url("03_train.ipynb") == (
        f"https://colab.research.google.com/github/{owner_and_name}/blob/main/notebooks/03_train.ipynb"
    )
    cell = project.setup_cell_source()
    assert f"git+{url}" in cell and project.REPOSITORY_PLACEHOLDER not in cell
    assert project.SETUP_SOURCE_VARIABLE in cell


def test_the_checkout_uses_its_own_notebooks():
    assert project.notebooks_dir() == CHECKOUT / "notebooks"
    assert (project.notebooks_dir() / "03_train.ipynb").is_file()
