"""Quiet TensorFlow start-up: no C++ log lines in the terminal or in notebook outputs.

TensorFlow prints about nine lines when it loads (oneDNN notices, "could not find cuda drivers", and on a
machine without a GPU "failed call to cuInit ... (303)"). ``TF_CPP_MIN_LOG_LEVEL`` hides those written after
TensorFlow's logging starts, but since TensorFlow 2.19 the lines written while its libraries load ignore it
(tensorflow/tensorflow#100442), so the first ``import tensorflow`` runs with the process's standard error
captured; what it wrote is replayed if the import fails, so a broken installation still explains itself.
A user who wants the lines sets ``TF_CPP_MIN_LOG_LEVEL=0`` before importing cifarlib.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import tempfile

LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
# 3 hides errors too: the one TensorFlow logs on every GPU-less machine (cuInit 303) is the reason;
# real failures still raise Python exceptions.
QUIET_LEVEL = "3"


def silence_tensorflow_startup() -> None:
    """Set the log level (unless the user chose one) and capture standard error while TensorFlow loads.

    A level below 2 chosen by the user means they want TensorFlow's informational lines: then nothing is captured.
    """
    if os.environ.setdefault(LOG_LEVEL_VARIABLE, QUIET_LEVEL) in ("0", "1"):
        return
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())


@contextlib.contextmanager
def captured_stderr_fd():
    """Send file descriptor 2 to a temporary file (C++ code writes there, past ``sys.stderr``); replay on error."""
    with tempfile.TemporaryFile(mode="w+b") as capture:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except KeyboardInterrupt:
            raise  # Ctrl-C while loading: nothing to explain, so the captured log lines are not replayed
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            os.write(2, capture.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as usual, once, and loads it with standard error captured."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        # The module keeps the real loader, so that importlib.resources and reloads see the usual one.
        module.__loader__ = self.loader
        with captured_stderr_fd():
            self.loader.exec_module(module)
