"""cifarlib: train and compare Inception-style networks on CIFAR-10, from Colab notebooks or the command line.

The public API is small; everything else lives in the module named for its job (config, data, model, memory,
system, storage, train, runs, results, sweep; test-data writers in testing).
"""

from cifarlib.data import CLASS_NAMES, load_cifar10
from cifarlib.memory import estimate_memory
from cifarlib.model import build_inception, build_model
from cifarlib.notebook_params import notebook_parameters
from cifarlib.storage import open_workspace
from cifarlib.system import format_system_report, print_system_report, system_report
from cifarlib.testing import write_cifar10_archive

__version__ = "0.1.0"

__all__ = [
    "CLASS_NAMES",
    "build_inception",
    "build_model",
    "estimate_memory",
    "format_system_report",
    "load_cifar10",
    "notebook_parameters",
    "open_workspace",
    "print_system_report",
    "system_report",
    "write_cifar10_archive",
]
