"""Soak test: SIGKILL real training runs at random moments and check that nothing saved is lost or corrupted.

``python -m cifarlib.soak --kills 20`` (``make soak``) trains a tiny network on synthetic data with the real
command line, kills it at a random moment of its training (from the line naming the run to its summary), inspects the
run folder, and runs the same command again to resume, until the run completes; then starts the next run, until
the number of kills is reached. It prints, per kill and in total:

- corrupt files: a config.json, history.csv, summary.json or best.keras that does not load;
- epochs lost: epochs the killed process had reported finished that the run folder can no longer resume from;
- history gaps: a history.csv whose epochs are not exactly 1..N;
- resume failures: a resuming command that failed, or a finished run that is not whole (epochs_run, history,
  leftover temporary files or backup).

The figures of a full soak are recorded in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from cifarlib import storage

# train's own lines (cifarlib.train, cifarlib.callbacks.describe_epoch): the run line comes before the network is
# built, so kills can land anywhere from then on; the epoch line is printed after every callback has run for the
# epoch, so after it was published. tests/test_soak.py checks both against the functions that print them.
EPOCH_STARTED = re.compile(r"^run \S+: (new run|resuming)")
EPOCH_DONE = re.compile(r"^epoch \d+/\d+: ")


@dataclass
class Inspection:
    """What one look at a run folder found."""

    corrupt: list[str] = field(default_factory=list)
    history_epochs: list[int] = field(default_factory=list)
    resumable_epochs: int = 0
    temporaries: list[str] = field(default_factory=list)

    @property
    def gap(self) -> bool:
        return self.history_epochs != list(range(1, len(self.history_epochs) + 1))


def inspect_run(run_dir: Path) -> Inspection:
    """Load every file of a run folder the way resume and results do, without importing Keras."""
    found = Inspection()
    run = storage.RunFolder(run_dir)
    for name in (storage.CONFIG_FILE, storage.SUMMARY_FILE):
        try:
            run.read_json(name)
        except storage.WorkspaceError:
            found.corrupt.append(name)
    try:
        found.history_epochs = [int(e) for e in run.read_history().get("epoch", [])]
    except Exception:  # noqa: BLE001 - any failure to parse is what this check counts.
        found.corrupt.append(storage.HISTORY_FILE)
    for model in (run_dir / storage.BEST_MODEL_FILE, run_dir / storage.BACKUP_DIR / storage.BEST_MODEL_FILE):
        if model.exists() and not _zip_is_whole(model):
            found.corrupt.append(str(model.relative_to(run_dir)))
    backup = storage.recover_tree(run_dir / storage.BACKUP_DIR)
    if backup is not None:
        try:
            found.resumable_epochs = json.loads((backup / storage.KERAS_BACKUP_METADATA).read_text())["epoch"]
        except (OSError, ValueError, KeyError):
            found.corrupt.append(f"{backup.name}/{storage.KERAS_BACKUP_METADATA}")
    elif run.completed:
        found.resumable_epochs = len(found.history_epochs)
    found.temporaries = [
        str(p.relative_to(run_dir)) for p in run_dir.rglob(".*") if storage.TEMPORARY_NAME.fullmatch(p.name)
    ]
    return found


def _zip_is_whole(path: Path) -> bool:
    """A .keras file is a zip archive: whole when every member's CRC checks."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError):
        return False


class Training:
    """One ``python -m cifarlib train`` process, its finished epochs counted from its output."""

    def __init__(self, command: list[str], env: dict):
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.epochs_done = 0
        self.fit_seconds: float | None = None
        self._fit_started: float | None = None
        self.started = threading.Event()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)
            if EPOCH_STARTED.match(line) and not self.started.is_set():
                self._fit_started = time.perf_counter()
                self.started.set()
            elif EPOCH_DONE.match(line):
                self.epochs_done += 1
        if self._fit_started is not None:
            self.fit_seconds = time.perf_counter() - self._fit_started
        self.started.set()

    def kill_after(self, seconds: float) -> bool:
        """SIGKILL the process ``seconds`` after its first epoch began; False if it had finished already."""
        self.started.wait()
        try:
            self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self._reader.join()
            return True
        self._reader.join()
        return False

    def wait(self) -> int:
        code = self.process.wait()
        self._reader.join()
        return code


def soak(
    kills: int = 20,
    *,
    workspace: Path | None = None,
    epochs: int = 4,
    train_size: int = 256,
    width: float = 0.25,
    batch_size: int = 64,
    seed: int = 0,
    say=print,
) -> dict:
    """Run the soak; returns the totals (see the module docstring) and prints one line per kill."""
    rng = random.Random(seed)
    workspace = Path(workspace or tempfile.mkdtemp(prefix="cifarlib-soak-"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    env.setdefault("CIFARLIB_STAGING", str(workspace / "staging"))

    def command(run_id: str) -> list[str]:
        return [
            sys.executable, "-m", "cifarlib", "train", "--data", "synthetic", "--train-size", str(train_size),
            "--width", str(width), "--batch-size", str(batch_size), "--epochs", str(epochs),
            "--workspace", str(workspace), "--run-id", run_id,
        ]  # fmt: skip

    # A first, uninterrupted run measures how long training takes, so kills can land anywhere in it.
    started = time.perf_counter()
    clean = Training(command("soak-clean"), env)
    if clean.wait() != 0 or clean.fit_seconds is None:
        raise RuntimeError("the uninterrupted soak run failed:\n" + "".join(clean.output[-20:]))
    window = clean.fit_seconds
    say(f"soak: uninterrupted run {time.perf_counter() - started:.0f} s, training window {window:.1f} s")

    totals = {"kills": 0, "corrupt_files": 0, "history_gaps": 0, "resume_failures": 0, "runs": 0}
    lost_per_kill: list[int] = []
    while totals["kills"] < kills:
        run_id = f"soak-{totals['runs'] + 1}"
        run_dir = workspace / "runs" / run_id
        totals["runs"] += 1
        # Epochs the run folder can resume from when the next process starts; it trains on from there.
        resumable = 0
        # A kill that let the run save nothing new leaves the next process alone: otherwise a phase longer than
        # the drawn kill times (building the network and the final evaluation, after the last epoch) would be
        # killed over and over, and the soak would never get past it.
        stalled = False
        while True:
            training = Training(command(run_id), env)
            # A resumed process has only the remaining epochs (and the final evaluation) left to train.
            remaining = window * (epochs - resumable + 1) / (epochs + 1)
            if not stalled and totals["kills"] < kills and training.kill_after(rng.uniform(0, remaining)):
                totals["kills"] += 1
                found = inspect_run(run_dir)
                lost = max(0, resumable + training.epochs_done - found.resumable_epochs)
                lost_per_kill.append(lost)
                totals["corrupt_files"] += len(found.corrupt)
                totals["history_gaps"] += int(found.gap)
                say(
                    f"kill {totals['kills']:2d} ({run_id}): resumable at epoch {found.resumable_epochs}, "
                    f"history {found.history_epochs}, lost {lost}, corrupt {found.corrupt or 'none'}"
                )
                stalled = found.resumable_epochs <= resumable
                resumable = found.resumable_epochs
                continue
            code = training.wait()
            if resumable == 0 and training.fit_seconds is not None:
                # The latest uninterrupted run sets the pace: the machine's load varies.
                window = training.fit_seconds
            if code != 0:
                totals["resume_failures"] += 1
                say(f"resume of {run_id} FAILED (exit {code}): {''.join(training.output[-3:]).strip()}")
                break
            final = inspect_run(run_dir)
            summary = storage.RunFolder(run_dir).read_json(storage.SUMMARY_FILE) or {}
            whole = (
                summary.get("epochs_run") == epochs
                and final.history_epochs == list(range(1, epochs + 1))
                and not final.corrupt
                and not final.temporaries
                and not (run_dir / storage.BACKUP_DIR).exists()
            )
            if not whole:
                totals["resume_failures"] += 1
            say(
                f"{run_id} finished: epochs_run {summary.get('epochs_run')}, history {final.history_epochs}, "
                f"temporary files {final.temporaries or 'none'}{'' if whole else '  <- NOT WHOLE'}"
            )
            break
    totals["epochs_lost_max"] = max(lost_per_kill, default=0)
    totals["epochs_lost_total"] = sum(lost_per_kill)
    say(
        f"soak: {totals['kills']} kills over {totals['runs']} runs: {totals['corrupt_files']} corrupt files, "
        f"{totals['history_gaps']} history gaps, {totals['resume_failures']} resume failures, epochs lost "
        f"per kill at most {totals['epochs_lost_max']} ({totals['epochs_lost_total']} in all)"
    )
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cifarlib.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs in all (default: 20)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of each run (default: 4)")
    parser.add_argument(
        "--train-size", type=int, default=256, help="synthetic training images (default: 256)"
    )
    parser.add_argument("--width", type=float, default=0.25, help="network width (default: 0.25)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times (default: 0)")
    parser.add_argument("--workspace", type=Path, help="workspace folder (default: a new temporary one)")
    args = parser.parse_args(argv)
    if args.kills < 1:
        parser.error(f"--kills must be at least 1, got {args.kills}")
    totals = soak(
        args.kills,
        workspace=args.workspace,
        epochs=args.epochs,
        train_size=args.train_size,
        width=args.width,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    failed = totals["corrupt_files"] or totals["history_gaps"] or totals["resume_failures"]
    return 1 if failed or totals["epochs_lost_max"] > 0 else 0


if __name__ == "__main__":
    sys.exit(main())
