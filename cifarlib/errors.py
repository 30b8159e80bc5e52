"""The exceptions cifarlib raises for bad input and broken storage.

Each names the file or argument at fault and what was expected, so that the one line the command line
prints is enough to act on. They subclass the built-in exception a caller would already catch
(``ValueError`` for bad data, ``OSError`` for storage).
"""


class CifarlibError(Exception):
    """Base class of every error cifarlib raises on purpose."""


class DataError(CifarlibError, ValueError):
    """A data source is missing, truncated, corrupt or not laid out as CIFAR-10."""


class UnsafeArchiveError(DataError):
    """An archive or pickle tried to do something a CIFAR-10 file never does (run code, escape its folder)."""


class WorkspaceError(CifarlibError, OSError):
    """The workspace (a Drive folder or a local one) cannot be read or written."""


class MissingWorkspaceError(WorkspaceError):
    """A command that only reads runs was pointed at a workspace folder that does not exist (``.workspace``: the
    ``Workspace`` it would have been, on Drive or not)."""

    def __init__(self, message: str, workspace):
        super().__init__(message)
        self.workspace = workspace


class RunConfigError(CifarlibError, ValueError):
    """A run's settings are invalid or disagree with the run already on disk."""


class RunLockedError(WorkspaceError):
    """Another live process holds the run's lock (it is training that run now)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C while training a run that has saved epochs: ``run_id`` names the run the same command resumes.

    A ``KeyboardInterrupt``, so whatever stops on Ctrl-C still stops; an interrupt before the first saved epoch
    stays a plain one, as there is nothing to resume.
    """

    def __init__(self, run_id: str):
        super().__init__(run_id)
        self.run_id = run_id
