"""``make gpu-check``: cifarlib's GPU path checked in one command, written up in one markdown report.

Usage (from the repository root)::

    python3 scripts/gpu_check.py --out FOLDER [--data ARCHIVE] [--tiny]

It runs three parts, each in its own processes with its own time limit, so that one slow or failing part
cannot take the others down with it:

1. speed: the reference network on synthetic data at batch 64, 128, 256 and 512 under the main Keras backend,
   then the same under PyTorch's;
2. memory: with each batch size of part 1 (one process each, which is what resets the peak counter), the
   training memory estimate against the measured peak, and the memory warning's decision;
3. accuracy: the tuned recipe on the real training images (45,000 / 5,000, seed 0) through ``train``, for as
   many epochs of its budget as fit in the time left.

The main backend is ``$KERAS_BACKEND`` when set, else TensorFlow where it is installed (Colab), else JAX (a bare
GPU machine). This file uses the standard library only: on a machine without Keras it first installs the
wheels carried beside the repository (``make gpu-carry``), then runs ``cifarlib.gpu_check`` from this
repository's copy. FOLDER receives ``report.md`` (and ``report.json``), the parts' logs and the accuracy run's
folder. ``--tiny`` shrinks every size so the whole check runs in about a minute on a CPU: the rehearsal that
tests/test_gpu_check.py runs in CI. Where a figure needs a GPU, the report says "no GPU".
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
# What travels with the repository to a GPU machine (ignored by git; `make gpu-carry` fills it).
CARRY_FOLDER = REPOSITORY / ".gpu-carry"
DEFAULT_WHEELS = CARRY_FOLDER / "wheels"
DEFAULT_DATA = CARRY_FOLDER / "cifar10-jpeg-train.tar.gz"
OFFICIAL_SOURCE = "keras"  # --data keras: cifarlib downloads the official archive (where there is a network)
BACKENDS = ("jax", "tensorflow", "torch")
COMPARISON_BACKEND = "torch"
# Seconds the accuracy part keeps after its last epoch: reloading the best checkpoint and scoring the validation
# split with the recipe's test-time augmentation (six views) still have to compile and run.
ACCURACY_RESERVE_SECONDS = 75
# Below this many seconds left, the accuracy part cannot reach one epoch on a GPU; it is skipped, not started.
ACCURACY_MINIMUM_SECONDS = 60


@dataclass(frozen=True)
class Sizes:
    """How big each part is; ``FULL`` is the GPU check, ``TINY`` the CPU rehearsal."""

    batch_sizes: tuple[int, ...]
    timed_images: int  # images per timed run, per batch size (the step count follows from it)
    warmup_steps: int  # untimed steps first, which absorb tracing and compilation
    epochs: int | None = None  # accuracy part: the planned budget; None: the tuned recipe's own
    accuracy_batch_size: int | None = None  # accuracy part; None: the tuned recipe's own
    images_per_class: int = 0  # tiny only: size of the generated archive when --data is not given


FULL = Sizes(batch_sizes=(64, 128, 256, 512), timed_images=25_600, warmup_steps=3)
# Ten images per class split 9 / 1 by the recipe's 10% validation share, in batches of 10: every batch has one
# shape, so the network compiles once per step kind (compiling dominates a CPU rehearsal). Three planned epochs
# and a few seconds of training exercise the stop between epochs too.
TINY = Sizes(
    batch_sizes=(8, 16),
    timed_images=32,
    warmup_steps=1,
    epochs=3,
    accuracy_batch_size=10,
    images_per_class=10,
)
TINY_ACCURACY_SECONDS = 5


@dataclass
class PartOutcome:
    """How one process of a part ended: ``ok``, ``failed``, ``timed out`` or ``skipped``, and why."""

    name: str
    status: str
    seconds: float = 0.0
    limit: float | None = None
    cause: str = ""
    log: str = ""
    result: dict | None = field(default=None, repr=False)


class CheckError(Exception):
    """A problem that stops the check before any part runs (bad arguments, wheels that do not install)."""


# ------------------------------------------------------------------------------------------ installation


def distribution_installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def install_carried_wheels(wheels: Path, target: Path, mode: str = "auto") -> dict:
    """Install the carried wheels into ``target`` (a folder put first on the parts' ``PYTHONPATH``).

    ``mode="auto"`` installs each wheel whose distribution this Python lacks (on a bare GPU machine: Keras and
    the few of its dependencies missing there); ``"always"`` installs every wheel, so the install path can be
    rehearsed where Keras is present; ``"never"`` installs nothing. Offline: ``--no-index``, no dependencies
    resolved (the carried set is complete by construction, see the Makefile's ``gpu-wheels``).
    """
    if mode not in ("auto", "always", "never"):
        raise CheckError(f"--install-wheels must be auto, always or never, got {mode!r}")
    found = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    record = {"folder": str(wheels), "installed": [], "already_present": [], "target": None}
    if mode == "never" or not found:
        record["note"] = "installing disabled" if mode == "never" else "no carried wheels"
        return record
    chosen = []
    for wheel in found:
        distribution = wheel.name.split("-")[0]
        if mode == "auto" and distribution_installed(distribution):
            record["already_present"].append(wheel.name)
        else:
            chosen.append(wheel)
    if not chosen:
        record["note"] = "every carried distribution is already installed"
        return record
    target.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile"]
    command += ["--disable-pip-version-check", "--target", str(target), *map(str, chosen)]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise CheckError(
            f"installing the carried wheels from {wheels} failed: {_last_lines(completed.stderr, 3)}"
        )
    record["installed"] = [wheel.name for wheel in chosen]
    record["target"] = str(target)
    return record


# -------------------------------------------------------------------------------------------------- parts


def run_part(name: str, command: list[str], *, env: dict, limit: float, log: Path) -> PartOutcome:
    """Run one part's process with its output in ``log``; kill its whole process group at ``limit`` seconds."""
    started = time.monotonic()
    with open(log, "w") as output:
        # A new session makes the process a group leader, so a timeout ends its children too (compilers, loaders).
        process = subprocess.Popen(
            command, cwd=REPOSITORY, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = process.wait(timeout=max(limit, 1.0))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = None
    seconds = time.monotonic() - started
    text = log.read_text(errors="replace")
    if code is None:
        return PartOutcome(name, "timed out", seconds, limit, f"stopped at its {limit:.0f} s limit", str(log))
    if code != 0:
        return PartOutcome(name, "failed", seconds, limit, f"exit code {code}: {_error_line(text)}", str(log))
    return PartOutcome(name, "ok", seconds, limit, "", str(log))


def _error_line(text: str) -> str:
    """The exception line of a traceback (the last line naming an error), else the output's last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line.split(":")[0] or line.startswith(("Traceback", "Killed")):
            return line[:300]
    return lines[-1][:300] if lines else "no output"


def _last_lines(text: str, count: int) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-count:])


def _read_result(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _child_command(part: str, *arguments: str) -> list[str]:
    return [sys.executable, "-m", "cifarlib.gpu_check", part, *arguments]


def _child_environment(site: Path | None, scratch: Path) -> dict:
    """The parts' environment: this repository's cifarlib (and the installed wheels) first on the path."""
    env = dict(os.environ)
    paths = [str(site)] if site else []
    paths.append(str(REPOSITORY))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Extracted archives and Keras's staging files stay outside the report folder, which is copied back.
    env["CIFARLIB_CACHE"] = str(scratch / "cache")
    env["CIFARLIB_STAGING"] = str(scratch / "staging")
    return env


def choose_backend(requested: str | None) -> str:
    """``requested``, else ``$KERAS_BACKEND``, else TensorFlow where installed (Colab), else JAX."""
    backend = requested or os.environ.get("KERAS_BACKEND")
    if backend:
        if backend not in BACKENDS:
            raise CheckError(f"backend must be one of {BACKENDS}, got {backend!r}")
        return backend
    return "tensorflow" if importlib.util.find_spec("tensorflow") else "jax"


# ------------------------------------------------------------------------------------------------ the check


class Check:
    """The state of one check: the parts' outcomes so far, written out as the report after each part."""

    def __init__(self, args: argparse.Namespace, sizes: Sizes, backend: str):
        self.args = args
        self.sizes = sizes
        self.backend = backend
        self.out: Path = args.out.resolve()
        self.logs = self.out / "logs"
        self.results = self.out / "results"
        self.started = time.monotonic()
        self.deadline = self.started + args.budget_seconds
        self.record: dict = {
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "sizes": "tiny (CPU rehearsal)" if args.tiny else "full",
            "backend": backend,
            "budget_seconds": args.budget_seconds,
            "machine": machine_facts(),
            "wheels": None,
            "parts": [],
            "speed": {},
            "accuracy": None,
        }

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def add(self, outcome: PartOutcome) -> PartOutcome:
        self.record["parts"].append({k: v for k, v in asdict(outcome).items() if k != "result"})
        print(
            f"[gpu-check] {outcome.name}: {outcome.status} ({outcome.seconds:.0f} s) {outcome.cause}",
            flush=True,
        )
        self.write()
        return outcome

    def write(self) -> None:
        self.record["wall_seconds"] = time.monotonic() - self.started
        (self.out / "report.json").write_text(json.dumps(self.record, indent=2, default=str))
        (self.out / "report.md").write_text(format_report(self.record))

    # -- parts

    def speed(self, backend: str, *, part_seconds: float, with_memory: bool) -> None:
        """Part 1 (and 2 with ``with_memory``): one process per batch size, so each has its own peak counter."""
        rows, facts = [], None
        part_deadline = time.monotonic() + part_seconds
        # Largest batch first: it is the likeliest fastest, so it is the one to have if the part runs out of time.
        batch_sizes = sorted(self.sizes.batch_sizes, reverse=True)
        processes = [[b] for b in batch_sizes] if with_memory else [batch_sizes]
        for group in processes:
            label = "-".join(map(str, group))
            name = f"speed-{backend}-b{label}"
            limit = min(part_deadline - time.monotonic(), self.left())
            if limit < 1:
                self.add(
                    PartOutcome(name, "skipped", cause="the part's time limit was spent before it started")
                )
                continue
            result = self.results / f"{name}.json"
            arguments = ["--batch-sizes", ",".join(map(str, group)), "--result", str(result)]
            arguments += [
                "--timed-images",
                str(self.sizes.timed_images),
                "--warmup-steps",
                str(self.sizes.warmup_steps),
            ]
            if with_memory:
                arguments.append("--memory")
            env = {**self.env, "KERAS_BACKEND": backend}
            outcome = run_part(
                name, _child_command("speed", *arguments), env=env, limit=limit, log=self.logs / f"{name}.log"
            )
            measured = _read_result(result)
            if measured:
                facts = {k: v for k, v in measured.items() if k != "rows"}
                rows = sorted(rows + measured["rows"], key=lambda row: row["batch_size"])
                if outcome.status != "ok" and measured["rows"]:
                    outcome.cause += f" (rows measured before that are kept: batch {[r['batch_size'] for r in measured['rows']]})"
            self.record["speed"][backend] = {"facts": facts, "rows": rows, "with_memory": with_memory}
            self.add(outcome)

    def accuracy(self) -> None:
        """Part 3: the tuned recipe until the time left runs out, read back from the run folder if it is cut off."""
        data = self.args.data
        if data is None and self.args.tiny:
            data = self.out / "tiny-training-images.tar.gz"
            arguments = ["--path", str(data), "--images-per-class", str(self.sizes.images_per_class)]
            made = run_part(
                "tiny-data",
                _child_command("tiny-data", *arguments),
                env=self.env,
                limit=120,
                log=self.logs / "tiny-data.log",
            )
            if made.status != "ok":
                self.add(made)
                return
        name = f"accuracy-{self.backend}"
        if data != OFFICIAL_SOURCE:
            data = Path(data or DEFAULT_DATA).expanduser().resolve()
            if not data.is_file():
                cause = f"no training images at {data} (run `make gpu-carry`, or pass --data)"
                self.add(PartOutcome(name, "skipped", cause=cause))
                return
        limit = min(self.args.accuracy_seconds, self.left())
        minimum = 1 if self.args.tiny else ACCURACY_MINIMUM_SECONDS
        if limit < minimum:
            self.add(PartOutcome(name, "skipped", cause=f"only {max(limit, 0):.0f} s of the budget left"))
            return
        fit_seconds = TINY_ACCURACY_SECONDS if self.args.tiny else limit - ACCURACY_RESERVE_SECONDS
        run_id = f"gpu-check-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}-{self.backend}"
        workspace = self.out / "workspace"
        result = self.results / f"{name}.json"
        arguments = ["--data", str(data), "--workspace", str(workspace), "--run-id", run_id]
        arguments += [
            "--stop-at",
            f"{time.time() + fit_seconds:.0f}",
            "--seed",
            str(self.args.seed),
            "--result",
            str(result),
        ]
        if self.sizes.accuracy_batch_size:
            arguments += ["--batch-size", str(self.sizes.accuracy_batch_size)]
        if self.sizes.epochs:
            arguments += ["--epochs", str(self.sizes.epochs)]
        env = {**self.env, "KERAS_BACKEND": self.backend}
        outcome = run_part(
            name, _child_command("accuracy", *arguments), env=env, limit=limit, log=self.logs / f"{name}.log"
        )
        measured = _read_result(result) or {}
        if "history" not in measured:
            # Cut off or failed before the end: the run folder's history.csv still holds every finished epoch.
            measured["history"] = _read_history(workspace / "runs" / run_id / "history.csv")
        measured.setdefault("run_id", run_id)
        measured["data"] = _shown_path(data) if isinstance(data, Path) else data
        measured["fit_seconds"] = fit_seconds
        self.record["accuracy"] = measured
        self.add(outcome)

    def run(self) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.results.mkdir(exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="cifarlib-gpu-check-"))
        try:
            try:
                site = scratch / "site"
                self.record["wheels"] = install_carried_wheels(
                    self.args.wheels, site, self.args.install_wheels
                )
            except CheckError as error:
                self.record["wheels"] = {"error": str(error)}
                self.add(PartOutcome("install-wheels", "failed", cause=str(error)))
            installed = (self.record["wheels"] or {}).get("target")
            self.env = _child_environment(Path(installed) if installed else None, scratch)
            # Every part runs under a named backend: Keras's own default, TensorFlow, may be absent.
            self.env["KERAS_BACKEND"] = self.backend
            self.write()
            self.speed(self.backend, part_seconds=self.args.speed_seconds, with_memory=True)
            if self.backend == COMPARISON_BACKEND:
                pass
            elif importlib.util.find_spec(COMPARISON_BACKEND) is None:
                self.add(
                    PartOutcome(
                        f"speed-{COMPARISON_BACKEND}", "skipped", cause=f"{COMPARISON_BACKEND} not installed"
                    )
                )
            else:
                self.speed(
                    COMPARISON_BACKEND,
                    part_seconds=min(self.args.comparison_seconds, self.left()),
                    with_memory=False,
                )
            self.accuracy()
        finally:
            self.write()
            shutil.rmtree(scratch, ignore_errors=True)
        print(f"[gpu-check] report: {self.out / 'report.md'}", flush=True)
        return 0


def machine_facts() -> dict:
    """Python, platform and GPUs (from ``nvidia-smi``, which needs no Python package), for the report's head."""
    facts = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "gpus": [],
    }
    smi = shutil.which("nvidia-smi")
    if smi:
        query = "--query-gpu=name,memory.total,driver_version"
        try:
            answer = subprocess.run(
                [smi, query, "--format=csv,noheader"], capture_output=True, text=True, timeout=30
            )
            facts["gpus"] = [line.strip() for line in answer.stdout.splitlines() if line.strip()]
        except (OSError, subprocess.TimeoutExpired) as error:
            facts["gpus_error"] = str(error)
    facts["preallocate"] = os.environ.get(
        "XLA_PYTHON_CLIENT_PREALLOCATE", "unset (JAX reserves 75% of the GPU)"
    )
    facts["versions"] = {}
    for name in ("keras", "jax", "jaxlib", "torch", "tensorflow", "GPUtil"):
        try:
            facts["versions"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            facts["versions"][name] = None
    return facts


def _read_history(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as file:
            return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(file)]
    except OSError:
        return []


def _number(text: str):
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def _shown_path(path: Path) -> str:
    """A path inside the repository as written relative to it (the report names no machine's folders)."""
    try:
        return str(path.relative_to(REPOSITORY))
    except ValueError:
        return path.name


# ------------------------------------------------------------------------------------------------ the report


def format_report(record: dict) -> str:
    """The markdown report: head, parts table, then one section per part (figures a GPU gives say "no GPU")."""
    machine = record["machine"]
    # The parts' own view of the libraries (carried wheels included) where a part got that far; else this process's.
    seen = [part["facts"] for part in record["speed"].values() if part.get("facts")]
    seen_versions = seen[0]["versions"] if seen else machine["versions"]
    versions = ", ".join(f"{k} {v}" if v else f"{k} not installed" for k, v in seen_versions.items())
    lines = [
        "# cifarlib GPU check",
        "",
        f"- Started {record['started']}; {record.get('wall_seconds', 0):.0f} s of a {record['budget_seconds']:.0f} s budget; "
        f"sizes: {record['sizes']}.",
        f"- GPU: {'; '.join(machine['gpus']) if machine['gpus'] else 'no GPU (nvidia-smi found none)'}.",
        f"- Python {machine['python']}, {machine['cpus']} CPUs; {versions}.",
        f"- Main Keras backend: {record['backend']}; XLA_PYTHON_CLIENT_PREALLOCATE: {machine['preallocate']}.",
        f"- Carried wheels: {_describe_wheels(record['wheels'])}.",
        f"- Command: `{record['command']}`",
        "",
        "## Parts",
        "",
        "| part | status | seconds | limit (s) | cause |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for part in record["parts"]:
        limit = f"{part['limit']:.0f}" if part["limit"] else ""
        lines.append(
            f"| {part['name']} | {part['status']} | {part['seconds']:.0f} | {limit} | {part['cause']} |"
        )
    lines += _speed_section(record)
    lines += _memory_section(record)
    lines += _accuracy_section(record)
    return "\n".join(lines) + "\n"


def _describe_wheels(wheels: dict | None) -> str:
    if not wheels:
        return "not looked at"
    if "error" in wheels:
        return wheels["error"]
    if wheels["installed"]:
        return "installed " + ", ".join(wheels["installed"])
    return wheels.get("note", "none installed")


def _speed_section(record: dict) -> list[str]:
    lines = ["", "## 1. Speed: the reference network on synthetic data", ""]
    speeds = record["speed"]
    if not speeds:
        return lines + ["Not measured (see Parts)."]
    facts = next((s["facts"] for s in speeds.values() if s["facts"]), None)
    if facts:
        on_gpu = facts["device_kind"] == "gpu"
        if not on_gpu:
            peak = "no GPU"
        elif facts["peak_tflops"]:
            peak = f"{facts['peak_tflops']:.0f} TFLOP/s (datasheet, dense fp16/bf16 tensor cores)"
        else:
            peak = f"unknown for {facts['device_name']}"
        lines += [
            f"{facts['parameters']:,} parameters; {facts['training_flops_per_image'] / 1e9:.2f} GFLOP per training "
            f"image (6 x {facts['forward_multiply_adds']:,} multiply-adds of the convolutions and dense layers). "
            f"Device: {facts['device_name']} ({facts['device_kind']}); peak: {peak}.",
        ]
    for backend, speed in speeds.items():
        lines += ["", f"### {backend} backend", ""]
        if not speed["rows"]:
            lines.append("No batch size finished (see Parts).")
            continue
        own = speed["facts"] or {}
        lines.append(
            f"Precision {own.get('precision')}, XLA {_on_off(own.get('jit_compile'))}; timed after "
            f"{_count(own.get('warmup_steps'), 'warm-up step')}."
        )
        lines += [
            "",
            "| batch | images/s | s per 50,000-image epoch | TFLOP/s | of peak | peak memory (GiB) | timed steps |",
        ]
        lines.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for row in speed["rows"]:
            share = _share(row["peak_fraction"], own.get("device_kind"))
            lines.append(
                f"| {row['batch_size']} | {row['images_per_second']:,.0f} | {row['seconds_per_epoch']:.2f} | "
                f"{row['tflops']:.2f} | {share} | {_gib(row.get('measured_peak_gib'))} | {row['timed_steps']} |"
            )
        best = min(speed["rows"], key=lambda row: row["seconds_per_epoch"])
        lines += [
            "",
            f"Fastest: batch {best['batch_size']}, {best['seconds_per_epoch']:.2f} s per 50,000-image epoch.",
        ]
    return lines


def _count(number, noun: str) -> str:
    if number is None:
        return f"a few {noun}s"
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _on_off(jit_compile) -> str:
    return {True: "on", False: "off"}.get(jit_compile, str(jit_compile))


def _gib(value) -> str:
    return f"{value:.2f}" if value is not None else "no GPU"


def _share(fraction, device_kind) -> str:
    if device_kind != "gpu":
        return "no GPU"
    return f"{fraction:.1%}" if fraction is not None else "peak unknown"


def _memory_section(record: dict) -> list[str]:
    backend = record["backend"]
    lines = ["", f"## 2. Memory: the training estimate against the measured peak ({backend} backend)", ""]
    speed = record["speed"].get(backend)
    rows = [row for row in (speed or {}).get("rows", []) if "estimated_gib" in row]
    if not rows:
        return lines + ["Not measured (see Parts)."]
    lines += [
        'Estimate: `estimate_memory(model, batch, method="training")` with Adam at the run\'s precision. Peak: the '
        "framework's own counter over the timed training, one process per batch size. Warning: what `train`'s memory "
        "warning decides for that batch on this GPU.",
        "",
        "| batch | estimate (GiB) | measured peak (GiB) | estimate / peak - 1 | warning | free GiB it read |",
        "| ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for row in rows:
        peak = row.get("measured_peak_gib")
        measured = f"{peak:.2f}" if peak is not None else "no GPU"
        error = f"{row['estimated_gib'] / peak - 1:+.1%}" if peak else "no GPU"
        warning = row["warning"]
        free = (
            f"{warning['free_gib']:.1f}"
            if warning.get("free_gib") is not None
            else "no GPU"
            if warning["decision"] == "no GPU"
            else "none"
        )
        lines.append(
            f"| {row['batch_size']} | {row['estimated_gib']:.2f} | {measured} | {error} | {warning['decision']} | {free} |"
        )
    return lines


def _accuracy_section(record: dict) -> list[str]:
    lines = ["", "## 3. Accuracy: the tuned recipe on the real training images", ""]
    accuracy = record["accuracy"]
    if not accuracy:
        return lines + ["Not measured (see Parts)."]
    summary = accuracy.get("summary") or {}
    history = accuracy.get("history") or []
    planned = accuracy.get("epochs_planned", "?")
    stopped = accuracy.get("stopped_by_time_limit")
    how = (
        "stopped between epochs at its time limit"
        if stopped
        else "ran its whole budget"
        if summary
        else "cut off: see Parts"
    )
    lines.append(
        f"Data `{accuracy['data']}`, validation fraction {accuracy.get('validation_fraction', '?')}, "
        f"seed {accuracy.get('seed', '?')}, batch {accuracy.get('batch_size', '?')}, "
        f"precision {summary.get('precision', '?')}: {len(history)} of {planned} planned epochs ({how}). "
        f"A new epoch starts only if, as long as the last one, it ends within {accuracy['fit_seconds']:.0f} s "
        "of the part's start."
    )
    if summary:
        lines.append(
            f"{summary['train_images']} training images; fit {summary['fit_seconds_this_session']:.0f} s; "
            f"train() returned after {accuracy['wall_seconds']:.0f} s."
        )
    if history:
        lines += [
            "",
            "| epoch | validation accuracy | training accuracy | seconds |",
            "| ---: | ---: | ---: | ---: |",
        ]
        for row in history:
            lines.append(
                f"| {int(row['epoch'])} | {_percent(row.get('val_accuracy'))} | {_percent(row.get('accuracy'))} | "
                f"{_seconds(row.get('seconds'))} |"
            )
    if summary.get("final_val_accuracy") is not None:
        lines += [
            "",
            f"Last epoch's weights with the recipe's test-time augmentation: {summary['final_val_accuracy']:.2%} on the validation split.",
        ]
    return lines


def _percent(value) -> str:
    return f"{value:.2%}" if isinstance(value, float) else "-"


def _seconds(value) -> str:
    return f"{value:.1f}" if isinstance(value, float) else "-"


# ---------------------------------------------------------------------------------------------- command line


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gpu_check.py", description="Check cifarlib's GPU path: speed, memory, accuracy; one report."
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for report.md, logs and the run folder"
    )
    parser.add_argument(
        "--data",
        default=None,
        help=f"the training images' .tar.gz (default {_shown_path(DEFAULT_DATA)}), or 'keras' for the official "
        "archive (downloads it)",
    )
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: the CPU rehearsal, about a minute")
    parser.add_argument(
        "--backend", choices=BACKENDS, default=None, help="main Keras backend (default: see above)"
    )
    parser.add_argument("--seed", type=int, default=0, help="accuracy part's split, shuffling and weights")
    parser.add_argument(
        "--budget-seconds", type=float, default=540, help="the whole check, installation included"
    )
    parser.add_argument(
        "--speed-seconds", type=float, default=200, help="parts 1 and 2 under the main backend"
    )
    parser.add_argument(
        "--comparison-seconds", type=float, default=70, help=f"part 1 under {COMPARISON_BACKEND}"
    )
    parser.add_argument(
        "--accuracy-seconds", type=float, default=360, help="part 3 at most (less if the budget is short)"
    )
    parser.add_argument("--wheels", type=Path, default=DEFAULT_WHEELS, help="carried wheels (make gpu-carry)")
    parser.add_argument("--install-wheels", choices=("auto", "always", "never"), default="auto")
    args = parser.parse_args(argv)
    if args.data not in (None, OFFICIAL_SOURCE) and not Path(args.data).expanduser().is_file():
        parser.error(f"--data {args.data}: no such file (expected the training images' .tar.gz, or 'keras')")
    for name in ("budget_seconds", "speed_seconds", "comparison_seconds", "accuracy_seconds"):
        if getattr(args, name) <= 0:
            parser.error(
                f"--{name.replace('_', '-')} must be a positive number of seconds, got {getattr(args, name)}"
            )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    try:
        backend = choose_backend(args.backend)
    except CheckError as error:
        print(f"gpu_check.py: {error}", file=sys.stderr)
        return 2
    return Check(args, TINY if args.tiny else FULL, backend).run()


if __name__ == "__main__":
    sys.exit(main())
