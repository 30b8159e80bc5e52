"""Whether a run's saved files are whole: checksums written beside them, and what is damaged when they differ.

Every write in a run folder is atomic (a temporary file, then a rename), so a kill never leaves half a file. A
file can still be damaged afterwards: cut by a full Drive, a sync conflict, or an edit by hand. Trusting such a
file loses work (a damaged ``backup/best.keras`` copied over the good one) or hides it (a truncated
``cifarlib_callbacks.json`` read as empty resets the early-stopping counters). So:

- each published backup carries ``manifest.json``, the SHA-256 of every other file in it, written last;
- a completed run's ``summary.json`` records the SHA-256 of its ``best.keras`` and ``history.csv``;
- files saved before either existed are checked by their structure (JSON objects, a history with one row per
  epoch and no empty cell, an HDF5 file whose datasets read, a ``.keras`` zip whose members match their CRCs).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

MANIFEST_FILE = "manifest.json"
# What summary.json records of a completed run's files.
SUMMARY_DIGESTS = {"best.keras": "best_model_sha256", "history.csv": "history_sha256"}


def file_digest(path: Path) -> str:
    """The SHA-256 of a file, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """Record the SHA-256 of every file in ``folder`` (a backup being published) in its ``manifest.json``."""
    digests = {
        path.relative_to(folder).as_posix(): file_digest(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(digests, indent=1, sort_keys=True))


def read_manifest(folder: Path) -> dict[str, str] | None:
    """The digests a backup recorded, or ``None`` where it has no readable manifest (an older backup)."""
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not all(isinstance(v, str) for v in manifest.values()):
        return None
    return manifest


def damaged_files(folder: Path) -> dict[str, str]:
    """The files of a backup folder that cannot be trusted, as ``{name: what is wrong}`` (empty when all are whole).

    With a manifest, every file it lists must exist and match its digest; without one, each file is checked by
    its structure (see the module docstring).
    """
    manifest = read_manifest(folder)
    if manifest is None:
        return {
            path.relative_to(folder).as_posix(): problem
            for path in sorted(folder.rglob("*"))
            if path.is_file() and path.name != MANIFEST_FILE and (problem := structure_problem(path))
        }
    problems = {}
    for name, digest in manifest.items():
        path = folder / name
        if not path.is_file():
            problems[name] = "missing"
        elif file_digest(path) != digest:
            problems[name] = "its contents differ from the checksum recorded when it was saved"
    return problems


def digest_problem(path: Path, digest: str | None) -> str | None:
    """What is wrong with ``path`` against the ``digest`` recorded for it; by its structure where none was."""
    if not path.is_file():
        return "missing"
    if digest is None:
        return structure_problem(path)
    if file_digest(path) != digest:
        return "its contents differ from the checksum recorded when the run completed"
    return None


def structure_problem(path: Path) -> str | None:
    """What is wrong with a saved file judged by its format alone (``None``: nothing found)."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            return f"not valid JSON ({error})"
        return None if isinstance(value, dict) else f"expected a JSON object, got {type(value).__name__}"
    if suffix == ".csv":
        return history_problem(path)
    if suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (OSError, zipfile.BadZipFile) as error:
            return f"not a readable .keras file ({error})"
        return f"member {bad} fails its CRC check" if bad else None
    if suffix == ".h5":
        return _hdf5_problem(path)
    return None


def history_problem(path: Path, epochs: int | None = None) -> str | None:
    """What is wrong with a history CSV: unreadable, epochs not 1..N, a cell left empty (a row cut short), or
    ``epochs`` rows expected and another count found. Values that training left as NaN are written as ``nan``."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, keep_default_na=False, dtype=str)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        return f"not a readable CSV file ({' '.join(str(error).split())})"
    if "epoch" not in frame.columns:
        return "no epoch column"
    if list(frame["epoch"]) != [str(n) for n in range(1, len(frame) + 1)]:
        return "its epochs are not numbered 1, 2, 3, ... without gaps"
    empty = frame.eq("").any(axis=1)
    if empty.any():
        return f"the row of epoch {frame['epoch'][empty.idxmax()]} has empty values (cut short?)"
    values = frame.drop(columns="epoch").apply(pd.to_numeric, errors="coerce")
    text = frame.drop(columns="epoch")
    unreadable = values.isna() & ~text.isin(["nan", "NaN"])
    if unreadable.any(axis=None):
        row = unreadable.any(axis=1).idxmax()
        return f"the row of epoch {frame['epoch'][row]} has a value that is not a number"
    if epochs is not None and len(frame) != epochs:
        return f"{len(frame)} rows for the {epochs} epochs the run finished"
    return None


def _hdf5_problem(path: Path) -> str | None:
    import h5py
    import numpy as np

    try:
        with h5py.File(path, "r") as handle:
            datasets = []
            handle.visititems(
                lambda _, item: datasets.append(item) if isinstance(item, h5py.Dataset) else None
            )
            for dataset in datasets:
                np.asarray(dataset[()])
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        return f"not a readable HDF5 file ({' '.join(str(error).split())})"
    return None
