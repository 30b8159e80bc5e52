"""cifarlib: train and compare Inception-style networks on CIFAR-10, from Colab notebooks or the command line.

The public API is small; everything else lives in the module named for its job (config, data, model, memory,
system, storage, train, runs, results, sweep; test-data writers in testing). Importing ``cifarlib`` imports no
TensorFlow: the public names below are loaded on first use (PEP 562), so that ``python -m cifarlib --help``, ``runs`` and ``report`` start in a moment, and
TensorFlow's start-up log lines are silenced before TensorFlow is first imported (see ``cifarlib.quiet``).
"""

import importlib
import importlib.util  # find_spec below; `import importlib` alone does not load it

from cifarlib import quiet

__version__ = "0.1.0"

quiet.silence_tensorflow_startup()

# Each public name and the module that holds it.
_PUBLIC = {
    "CLASS_NAMES": "cifarlib.data",
    "load_cifar10": "cifarlib.data",
    "write_cifar10_archive": "cifarlib.testing",
    "estimate_memory": "cifarlib.memory",
    "build_inception": "cifarlib.model",
    "build_model": "cifarlib.model",
    "notebook_parameters": "cifarlib.notebook_params",
    "open_workspace": "cifarlib.storage",
    "format_system_report": "cifarlib.system",
    "print_system_report": "cifarlib.system",
    "system_report": "cifarlib.system",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    """Load a public name, or a submodule such as ``cifarlib.system``, on first use."""
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    elif importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
