"""The command line, ``python -m cifarlib``: the same functions the notebooks call.

Subcommands: ``train``, ``config``, ``runs``, ``evaluate``, ``predict``, ``report``, ``plots``, ``notebooks``,
``sweep``, ``bench`` and ``bench-accuracy``. Every ``RunConfig`` field is a ``train`` flag, with its help text from ``RunConfig``; a flag left
unset takes the chosen preset's value, and ``config`` prints the resolved settings. Other defaults are read from
the signatures of the functions the commands call, never restated here. Errors print one line to stderr and exit
with status 1 (2 for wrong usage).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import logging
import os
import signal
import socket
import sys
import typing


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (the rest of the command line's errors are one line too), and no
    abbreviated flags: ``--epoch`` is a mistake to point out, not a shorthand for ``--epochs``."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def refuse_unknown(self, unknown: list[str]):
        """Exit with one line naming the first unknown argument and the nearest flag of this command."""
        import difflib

        word = unknown[0]
        flags = [flag for action in self._actions for flag in action.option_strings if flag.startswith("--")]
        nearest = difflib.get_close_matches(word.split("=", 1)[0], flags, n=1, cutoff=0.6)
        hint = f"; did you mean {nearest[0]}?" if nearest else ""
        self.error(f"unrecognized argument {word}{hint}")


# The settings a newcomer sets first; `train --help` lists them (with --workspace and --run-id) before the rest.
COMMON_SETTINGS = ("preset", "data", "epochs", "batch_size", "train_size", "width", "seed")


# The default of every RunConfig flag: a flag left out keeps the preset's value, while `--pool-after none` or
# `--early-stopping-patience none` sets None explicitly.
_UNSET = argparse.SUPPRESS


def _run_config_flags(parser: argparse.ArgumentParser, common) -> None:
    """One flag per RunConfig field; unset flags keep the chosen preset's value.

    ``COMMON_SETTINGS`` go into the argument group ``common``; the recipe's other settings and the device's
    follow in groups of their own.
    """
    from cifarlib.config import DEFAULT_PRESET, DEVICE_FIELDS, RunConfig, setting_types

    hints = setting_types()
    recipe = parser.add_argument_group("the rest of the recipe (default: the preset's)")
    device = parser.add_argument_group("how to use the machine (not part of the run id)")
    fields = sorted(
        dataclasses.fields(RunConfig),
        key=lambda f: COMMON_SETTINGS.index(f.name) if f.name in COMMON_SETTINGS else len(COMMON_SETTINGS),
    )
    for field in fields:
        group = common if field.name in COMMON_SETTINGS else device if field.name in DEVICE_FIELDS else recipe
        flag = "--" + field.name.replace("_", "-")
        default = _shown(field.default)
        if field.metadata.get("recipe"):
            default = f"the preset's; {DEFAULT_PRESET}: {default}"
        help_text = f"{field.metadata.get('help', '')} (default: {default})"
        kind = hints[field.name]
        if kind is bool:
            group.add_argument(
                flag, dest=field.name, action=argparse.BooleanOptionalAction, default=_UNSET, help=help_text
            )
            continue
        group.add_argument(
            flag, dest=field.name, type=_parser_for(field.name, kind), default=_UNSET, help=help_text
        )


def _shown(value) -> str:
    """A default as the user would type it (JSON lists for the network sizes)."""
    return json.dumps(value) if isinstance(value, tuple) else repr(value)


def _function_default(function, name: str):
    """The default of ``function``'s parameter ``name``: the one place a command's default is written."""
    return inspect.signature(function).parameters[name].default


def _comma_list(values) -> str:
    return ",".join(str(value) for value in values)


def _parser_for(name: str, kind):
    from cifarlib.config import setting_accepts_none

    if typing.get_origin(kind) is tuple:
        return _json_list(name)
    if any(typing.get_origin(arg) is tuple for arg in typing.get_args(kind)):
        return _json_list(name, none=True)
    args = [a for a in typing.get_args(kind) if a is not type(None)] or [kind]

    def parse(text: str):
        if text.lower() == "none" and setting_accepts_none(name):
            return None
        if name == "jit_compile":
            return {"true": True, "false": False}.get(text.lower(), text)
        for candidate in args:
            try:
                return candidate(text)
            except (TypeError, ValueError):
                continue
        raise argparse.ArgumentTypeError(f"expected {' or '.join(a.__name__ for a in args)}, got {text!r}")

    parse.__name__ = "/".join(a.__name__ for a in args)
    return parse


def _json_list(name: str, *, none: bool = False):
    def parse(text: str):
        if none and text.lower() in ("none", "null"):
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, list):
            expected = "a JSON list or none" if none else "a JSON list"
            raise argparse.ArgumentTypeError(f"expected {expected} for {name}, got {text!r}")
        return value

    parse.__name__ = "JSON list"
    return parse


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line; with ``only``, the arguments of that command alone (every command is still listed).

    ``sweep``, ``bench`` and ``bench-accuracy`` read their defaults from the functions they call, whose modules
    import pandas, Keras and TensorFlow; ``only`` keeps that cost off ``--help`` and the other commands.
    """
    from cifarlib import __version__
    from cifarlib.config import DEFAULT_PRESET, EVALUATION_SPLITS, PRESETS

    parser = _Parser(
        prog="python -m cifarlib",
        description="The command line of cifarlib (also installed as the `cifarlib` command): the same "
        "functions the notebooks call.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages (INFO level)")
    parser.add_argument("--version", action="version", version=f"cifarlib {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train (or resume) a run",
        usage="%(prog)s [--preset NAME] [--data SOURCE] [--epochs N] [--batch-size N] [other options]",
        description=(
            f"Train, or resume, one run. --preset picks the recipe ({', '.join(sorted(PRESETS))}; default "
            f"{DEFAULT_PRESET}); every other setting defaults to that preset's value. "
            "`python -m cifarlib config --preset NAME` prints a preset's full settings."
        ),
    )
    common = train.add_argument_group("what most runs set")
    _run_config_flags(train, common)
    common.add_argument(
        "--workspace",
        help="workspace folder (default: Drive in Colab, else $CIFARLIB_HOME or ~/cifarlib-workspace)",
    )
    common.add_argument(
        "--run-id",
        help="names the run; an unfinished run of that id is resumed (default: derived from the settings, so the "
        "same command resumes its unfinished run)",
    )
    control = train.add_argument_group("starting over, and data without a network")
    control.add_argument(
        "--retrain",
        action="store_true",
        help="train a completed run again from scratch (an unfinished run is resumed)",
    )
    control.add_argument(
        "--fallback-synthetic",
        action="store_true",
        help="with --data keras: if CIFAR-10 cannot be downloaded, say so and train on synthetic data",
    )

    config = commands.add_parser(
        "config",
        help="print the resolved settings of a preset (with any flags applied) as JSON",
        usage="%(prog)s [--preset NAME] [any train setting]",
        description="Print the settings `train` would use with the same flags, as JSON.",
    )
    _run_config_flags(config, config.add_argument_group("what most runs set"))

    runs = commands.add_parser("runs", help="table of the runs in a workspace")
    runs.add_argument("--workspace", help="workspace folder")
    runs.add_argument("--sweep", help="only the runs of this sweep")
    runs.add_argument(
        "--wide", action="store_true", help="every column (default: those that fit 100 columns)"
    )

    predict = commands.add_parser(
        "predict",
        help="the class a trained run gives each image file",
        description="Print the class and its probability that a run's best.keras gives each image (PNG or JPEG; "
        "other sizes are resized to 32x32), with the run's own test-time augmentation.",
    )
    predict.add_argument("run_id", metavar="RUN_ID", help="the trained run")
    predict.add_argument(
        "images", metavar="IMAGE_OR_FOLDER", nargs="+", help="image files, or folders of them"
    )
    predict.add_argument("--workspace", help="workspace folder")

    notebooks = commands.add_parser(
        "notebooks",
        help="copy the five notebooks into a folder",
        description="Copy the five notebooks that ship with cifarlib into DIR (made if missing). A notebook "
        "already there with other contents is left alone unless --overwrite is given.",
    )
    notebooks.add_argument("folder", metavar="DIR", help="where the notebooks go")
    notebooks.add_argument("--overwrite", action="store_true", help="replace notebooks of the same name")

    evaluate = commands.add_parser("evaluate", help="reload a run's best.keras and score it on the test set")
    evaluate.add_argument("run_id", metavar="RUN_ID", help="the run to evaluate")
    evaluate.add_argument("--workspace", help="workspace folder")
    evaluate.add_argument("--data", help="data source (default: the one the run trained on)")
    evaluate.add_argument(
        "--split",
        choices=EVALUATION_SPLITS,
        default="test",
        help="score the test set or the run's own validation split (default: test)",
    )
    evaluate.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="flip test-time augmentation on or off (default: as the run was trained)",
    )
    evaluate.add_argument(
        "--tta-translate",
        type=int,
        metavar="PIXELS",
        help="with --tta, also average 1..8-pixel shifted views (default: as the run was trained)",
    )

    commands.add_parser("report", help="the system report: GPU, TPU, CPU, RAM")

    plots = commands.add_parser("plots", help="write 04_results' plots as PNG files")
    plots.add_argument("--workspace", help="workspace folder")
    plots.add_argument(
        "--sweep",
        help="compare only this sweep's runs, plots in its folder (default: the newest sweep, if any)",
    )
    plots.add_argument("--all-runs", action="store_true", help="compare every run, not one sweep's")
    plots.add_argument(
        "--run-id", help="run for the confusion matrix and gallery (default: newest completed)"
    )
    plots.add_argument("--data", help="data source for that run's test images (default: the run's own)")

    sweep = commands.add_parser("sweep", help="run 03_train once per batch size with papermill")
    if only in (None, "sweep"):
        _sweep_arguments(sweep, DEFAULT_PRESET)

    bench = commands.add_parser(
        "bench", help="training throughput: the reference notebook's way vs cifarlib's"
    )
    if only in (None, "bench"):
        _bench_arguments(bench)

    accuracy = commands.add_parser(
        "bench-accuracy",
        help="reference recipe vs tuned recipe on the real training images, same epoch budget",
    )
    if only in (None, "bench-accuracy"):
        _bench_accuracy_arguments(accuracy)
    return parser


def _sweep_arguments(sweep: argparse.ArgumentParser, default_preset: str) -> None:
    from cifarlib.sweep import run_sweep

    batch_sizes = _comma_list(_function_default(run_sweep, "batch_sizes"))
    sweep.add_argument("--batch-sizes", default=batch_sizes, help=f"comma-separated (default: {batch_sizes})")
    sweep.add_argument("--epochs", type=int, help="epochs of every run (default: the preset's)")
    sweep.add_argument("--data", help="data source of every run (default: 03_train's)")
    sweep.add_argument("--preset", help=f"preset of every run (default: {default_preset})")
    sweep.add_argument("--train-size", type=int, help="first N training images of every run (default: all)")
    sweep.add_argument("--width", type=float, help="network width of every run (default: 03_train's)")
    name = _function_default(run_sweep, "name")
    sweep.add_argument("--name", default=name, help=f"sweep name; run ids are NAME-bBATCH (default: {name})")
    sweep.add_argument("--workspace", help="workspace folder")
    sweep.add_argument("--notebook", help="training notebook to execute (default: notebooks/03_train.ipynb)")


def _bench_arguments(bench: argparse.ArgumentParser) -> None:
    from cifarlib.bench import run_benchmark

    for flag, help_text in (
        ("batch_size", "batch size of both ways"),
        ("steps", "timed training steps per way"),
        ("warmup", "untimed steps first, for tracing and compilation"),
    ):
        default = _function_default(run_benchmark, flag)
        bench.add_argument(
            "--" + flag.replace("_", "-"), type=int, default=default, help=f"{help_text} (default: {default})"
        )
    memory_batches = _comma_list(_function_default(run_benchmark, "memory_batches"))
    bench.add_argument(
        "--memory-batches",
        default=memory_batches,
        help=f"batch sizes of the GPU memory table (default: {memory_batches})",
    )


def _bench_accuracy_arguments(accuracy: argparse.ArgumentParser) -> None:
    from cifarlib.bench_accuracy import accuracy_benchmark

    accuracy.add_argument(
        "--data", help="the real CIFAR-10 training images, a .tar.gz (default: $CIFARLIB_ACCURACY_DATA)"
    )
    epochs = _function_default(accuracy_benchmark, "epochs")
    accuracy.add_argument(
        "--epochs", type=int, default=epochs, help=f"epoch budget of every run (default: {epochs})"
    )
    recipes = _comma_list(_function_default(accuracy_benchmark, "recipes"))
    accuracy.add_argument(
        "--recipes",
        default=recipes,
        help=f"comma-separated recipes: a preset, or a preset with changed settings, "
        f"tuned+ema_momentum=0.99+flip=alternate (default: {recipes})",
    )
    seeds = _comma_list(_function_default(accuracy_benchmark, "seeds"))
    accuracy.add_argument("--seeds", default=seeds, help=f"comma-separated seeds (default: {seeds})")
    width = _function_default(accuracy_benchmark, "width")
    accuracy.add_argument("--width", type=float, default=width, help=f"network width (default: {width})")
    accuracy.add_argument("--train-size", type=int, help="use only the first N images (quick checks)")
    accuracy.add_argument(
        "--batch-size", type=int, help="one batch size for every recipe (default: each recipe's own)"
    )
    workspace = _function_default(accuracy_benchmark, "workspace")
    accuracy.add_argument(
        "--workspace", default=workspace, help=f"where the runs go (default: ./{workspace})"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    named = [word for word in argv if word in COMMANDS]
    parser = build_parser(only=named[0] if named else "")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # The command's own parser knows its flags, so it names the nearest and its own --help.
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices[args.command].refuse_unknown(unknown)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    from cifarlib.errors import CifarlibError

    try:
        return COMMANDS[args.command](args) or 0
    except BrokenPipeError:
        # The reader went away (`runs | head`): stop quietly, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CifarlibError, ValueError, OSError) as error:
        print(f"cifarlib {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:
        print(f"cifarlib {args.command}: interrupted{_resume_advice(interrupt)}", file=sys.stderr)
        return 130


def _resume_advice(interrupt: KeyboardInterrupt) -> str:
    """What to do after Ctrl-C: resume, where a run or sweep had started (``RunInterrupted`` says which)."""
    run_id = getattr(interrupt, "run_id", None)
    if run_id is None:
        return ""
    return f"; run the same command again to resume run {run_id} from its last saved epoch"


def _config_from_flags(args):
    """The RunConfig of ``--preset`` (default: the default preset) with every flag that was given applied."""
    from cifarlib.config import DEFAULT_PRESET, RunConfig

    given = vars(args)  # only the flags that were given (their default is _UNSET)
    overrides = {
        f.name: given[f.name] for f in dataclasses.fields(RunConfig) if f.name in given and f.name != "preset"
    }
    preset = given.get("preset") or DEFAULT_PRESET
    config = RunConfig.from_preset(preset, **overrides)
    if getattr(args, "fallback_synthetic", False) and config.data == "keras" and not _completed(config, args):
        config = config.replace(data=_keras_or_synthetic())
    return config


def _completed(config, args) -> bool:
    """Whether ``train`` would find this run complete, and so need no data at all."""
    from cifarlib import storage
    from cifarlib.errors import WorkspaceError
    from cifarlib.train import settings_run_id

    try:
        workspace = storage.as_workspace(args.workspace, create=False)
    except WorkspaceError:
        return False
    return workspace.run(args.run_id or settings_run_id(config)).completed


def _config(args) -> int:
    print(_config_from_flags(args).to_json())
    return 0


def _train(args) -> int:
    from cifarlib.formatting import format_accuracy
    from cifarlib.train import train

    config = _config_from_flags(args)
    result = train(config, args.workspace, run_id=args.run_id, retrain=args.retrain)
    summary = result.summary
    print(
        f"run {result.run_id}: {summary.get('epochs_run')} epochs, best epoch {summary.get('best_epoch')}, "
        f"test accuracy {format_accuracy(summary.get('test_accuracy'), missing='n/a (no test set)')}"
    )
    return 0


def _keras_or_synthetic() -> str:
    """``"keras"`` once CIFAR-10 is downloaded (or cached), else ``"synthetic"`` with one line saying so."""
    from urllib.parse import urlsplit

    from cifarlib.data import OFFICIAL_URL, download_official, official_archive_cached
    from cifarlib.errors import DataError

    if not official_archive_cached():
        host = urlsplit(OFFICIAL_URL).hostname
        try:
            # Asked first, so that no network means one line rather than Keras's download attempt and its error.
            socket.create_connection((host, 443), timeout=10).close()
        except OSError:
            return _synthetic_instead(f"no network ({host} cannot be reached)")
    try:
        download_official()
    except DataError as error:
        return _synthetic_instead(str(error).split(" (", 1)[0])
    return "keras"


def _synthetic_instead(reason: str) -> str:
    print(
        f"{reason}: training on SYNTHETIC data, whose accuracy says nothing about CIFAR-10", file=sys.stderr
    )
    # That line said it: the data module's own warning about synthetic data would say it a second time.
    logging.getLogger("cifarlib.data").addFilter(lambda record: "SYNTHETIC" not in record.getMessage())
    return "synthetic"


def _runs(args) -> int:
    from cifarlib import storage
    from cifarlib.errors import MissingWorkspaceError
    from cifarlib.results import format_runs_table, no_runs_message, runs_table

    try:
        workspace = storage.as_workspace(args.workspace, create=False)
    except MissingWorkspaceError as error:
        # A fresh machine, or a mistyped folder: nothing to list, and the sentence names where it looked.
        print(no_runs_message(error.workspace, sweep=args.sweep) + _local_workspace_hint(args))
        return 0
    table = runs_table(workspace, sweep=args.sweep)
    if table.empty:
        print(no_runs_message(workspace, sweep=args.sweep) + _local_workspace_hint(args))
    else:
        print(format_runs_table(table, wide=args.wide))
    return 0


# Where `make train` and `bench-accuracy` put their runs, relative to the folder they run in.
LOCAL_WORKSPACE = "workspace"


def _local_workspace_hint(args) -> str:
    """Where the default workspace has no runs but ``./workspace`` has: a sentence naming the flag to use."""
    from pathlib import Path

    local = Path(LOCAL_WORKSPACE) / "runs"
    if args.workspace is not None or not local.is_dir() or not any(local.iterdir()):
        return ""
    return f"\n{local} has runs (from `make train` or bench-accuracy): add --workspace {LOCAL_WORKSPACE}"


def _evaluate(args) -> int:
    from cifarlib.evaluation import describe_tta
    from cifarlib.formatting import format_accuracy
    from cifarlib.runs import evaluate_run

    result = evaluate_run(
        args.run_id,
        args.workspace,
        data=args.data,
        split=args.split,
        tta=args.tta,
        tta_translate=args.tta_translate,
    )
    print(
        f"run {args.run_id}: {args.split} loss {result['loss']:.4f}, "
        f"{args.split} accuracy {format_accuracy(result['accuracy'])} "
        f"({result['images']} images, {describe_tta(result['tta'], result['tta_translate'])})"
    )
    if result["label_smoothing"]:
        print(
            f"The loss above is the plain cross-entropy; the run's history.csv gives its training loss, with "
            f"label smoothing {result['label_smoothing']:g}, so the two differ."
        )
    return 0


def _plots(args) -> int:
    from cifarlib.errors import WorkspaceError
    from cifarlib.results import write_plots

    try:
        write_plots(
            args.workspace,
            sweep=args.sweep,
            all_runs=args.all_runs,
            run_id=args.run_id,
            data=args.data,
            # Each path as it is written, so what was done is listed even when a later plot fails.
            written=lambda path: print(path, flush=True),
        )
    except WorkspaceError as error:
        hint = _local_workspace_hint(args).strip()
        if hint:
            raise WorkspaceError(f"{error}; {hint}") from error
        raise
    return 0


def _predict(args) -> int:
    from cifarlib.formatting import format_accuracy
    from cifarlib.runs import predict_files

    table = predict_files(args.run_id, args.images, args.workspace)
    for row in table.itertuples(index=False):
        note = f" ({row.note})" if row.note else ""
        print(f"{row.file}: {row.predicted_class} {format_accuracy(row.probability)}{note}")
    return 0


def _notebooks(args) -> int:
    from cifarlib.project import copy_notebooks

    for path in copy_notebooks(args.folder, overwrite=args.overwrite):
        print(path)
    return 0


def _report(args) -> int:
    from cifarlib.system import print_system_report

    print_system_report()
    return 0


def _integers(flag: str, text: str, *, minimum: int) -> list[int]:
    """A comma-separated flag's integers, each at least ``minimum``, or one error naming the flag."""
    try:
        values = [int(item) for item in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < minimum:
        kind = "positive integers" if minimum == 1 else f"integers >= {minimum}"
        raise ValueError(f"{flag} must be comma-separated {kind}, got {text!r}")
    return values


def _sweep(args) -> int:
    from cifarlib.sweep import TRAIN_NOTEBOOK, run_sweep

    batch_sizes = _integers("--batch-sizes", args.batch_sizes, minimum=1)
    # Only the settings given are passed: the rest keep 03_train's defaults (the default preset's values).
    given = {
        name: getattr(args, name)
        for name in ("epochs", "data", "preset", "train_size", "width")
        if getattr(args, name) is not None
    }
    table = run_sweep(
        batch_sizes,
        name=args.name,
        workspace=args.workspace,
        notebook=args.notebook or TRAIN_NOTEBOOK,
        **given,
    )
    return 1 if (table["status"] == "failed").any() else 0


def _bench(args) -> int:
    from cifarlib.bench import run_benchmark

    for name in ("batch_size", "steps", "warmup"):
        if getattr(args, name) <= 0:
            raise ValueError(
                f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}"
            )
    print(
        run_benchmark(
            batch_size=args.batch_size,
            steps=args.steps,
            warmup=args.warmup,
            memory_batches=_integers("--memory-batches", args.memory_batches, minimum=1),
        )
    )
    return 0


def _bench_accuracy(args) -> int:
    from cifarlib.bench_accuracy import (
        DATA_VARIABLE,
        accuracy_benchmark,
        default_data,
        format_accuracy_table,
        split_recipes,
    )

    data = args.data or default_data()
    if data is None:
        raise ValueError(f"--data is required: the real CIFAR-10 training images (or set ${DATA_VARIABLE})")
    table = accuracy_benchmark(
        data,
        epochs=args.epochs,
        recipes=split_recipes(args.recipes),
        seeds=tuple(_integers("--seeds", args.seeds, minimum=0)),
        workspace=args.workspace,
        width=args.width,
        train_size=args.train_size,
        batch_size=args.batch_size,
    )
    print(format_accuracy_table(table))
    return 0


COMMANDS = {
    "train": _train,
    "config": _config,
    "runs": _runs,
    "evaluate": _evaluate,
    "report": _report,
    "plots": _plots,
    "predict": _predict,
    "notebooks": _notebooks,
    "sweep": _sweep,
    "bench": _bench,
    "bench-accuracy": _bench_accuracy,
}


def entry() -> None:
    """``python -m cifarlib`` and the ``cifarlib`` command: ``main``, then exit with its status."""
    status = main()
    # The work is done: a late Ctrl-C would only interrupt the interpreter's shutdown with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(status)


if __name__ == "__main__":
    entry()
