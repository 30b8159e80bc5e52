"""The command line, ``python -m cifarlib``: the same functions the notebooks call.

Subcommands: ``train``, ``runs``, ``evaluate``, ``report``, ``plots``, ``sweep``, ``bench`` and
``bench-accuracy``. Every ``RunConfig`` field is a ``train`` flag, with its help text from ``RunConfig``. Errors print
one line to stderr and exit with status 1 (2 for wrong usage).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import typing

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _run_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field; unset flags keep the preset's value."""
    from cifarlib.config import RunConfig

    hints = typing.get_type_hints(RunConfig)
    for field in dataclasses.fields(RunConfig):
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{field.metadata.get('help', '')} (default: {field.default!r})"
        kind = hints[field.name]
        if kind is bool:
            parser.add_argument(
                flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
            continue
        parser.add_argument(
            flag, dest=field.name, type=_parser_for(field.name, kind), default=None, help=help_text
        )


def _parser_for(name: str, kind):
    args = [a for a in typing.get_args(kind) if a is not type(None)] or [kind]

    def parse(text: str):
        if text.lower() == "none" and type(None) in typing.get_args(kind):
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


def build_parser() -> argparse.ArgumentParser:
    from cifarlib.config import EVALUATION_SPLITS

    parser = argparse.ArgumentParser(prog="python -m cifarlib", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages (INFO level)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train (or resume) a run", description="Train, or resume, one run."
    )
    train.add_argument(
        "--workspace",
        help="workspace folder (default: Drive in Colab, else $CIFARLIB_HOME or ~/cifarlib-workspace)",
    )
    train.add_argument(
        "--run-id",
        help="names the run; an unfinished run of that id is resumed (default: a new time-based id)",
    )
    train.add_argument("--retrain", action="store_true", help="train a completed run again from scratch")
    train.add_argument(
        "--fallback-synthetic",
        action="store_true",
        help="with --data keras: if CIFAR-10 cannot be downloaded, say so and train on synthetic data",
    )
    _run_config_flags(train)

    runs = commands.add_parser("runs", help="table of the runs in a workspace")
    runs.add_argument("--workspace", help="workspace folder")
    runs.add_argument("--sweep", help="only the runs of this sweep")

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
    plots.add_argument("--sweep", help="compare only this sweep's runs (plots go to its folder)")
    plots.add_argument(
        "--run-id", help="run for the confusion matrix and gallery (default: newest completed)"
    )
    plots.add_argument("--data", help="data source for that run's test images (default: the run's own)")

    sweep = commands.add_parser("sweep", help="run 03_train once per batch size with papermill")
    sweep.add_argument(
        "--batch-sizes", default="64,128,256,512", help="comma-separated (default: 64,128,256,512)"
    )
    sweep.add_argument("--epochs", type=int, required=True, help="epochs of every run")
    sweep.add_argument("--data", default="keras", help="data source of every run (default: keras)")
    sweep.add_argument("--preset", default="seed", help="preset of every run (default: seed)")
    sweep.add_argument("--train-size", type=int, help="first N training images of every run")
    sweep.add_argument("--width", type=float, default=1.0, help="network width of every run (default: 1.0)")
    sweep.add_argument(
        "--name", default="batch-size", help="sweep name; run ids are NAME-bBATCH (default: batch-size)"
    )
    sweep.add_argument("--workspace", help="workspace folder")
    sweep.add_argument("--notebook", help="training notebook to execute (default: notebooks/03_train.ipynb)")

    bench = commands.add_parser(
        "bench", help="training throughput: the reference notebook's way vs cifarlib's"
    )
    bench.add_argument("--batch-size", type=int, default=256, help="batch size of both ways (default: 256)")
    bench.add_argument("--steps", type=int, default=20, help="timed training steps per way (default: 20)")
    bench.add_argument(
        "--warmup", type=int, default=3, help="untimed steps first, for tracing and compilation (default: 3)"
    )
    bench.add_argument(
        "--memory-batches",
        default="64,128,256,512",
        help="batch sizes of the GPU memory table (default: 64,128,256,512)",
    )

    accuracy = commands.add_parser(
        "bench-accuracy",
        help="reference recipe vs tuned recipe on the real training images, same epoch budget",
    )
    accuracy.add_argument(
        "--data", help="the real training images (default: ../shared/data/cifar10-jpeg-train.tar.gz)"
    )
    accuracy.add_argument("--epochs", type=int, default=10, help="epoch budget of every run (default: 10)")
    accuracy.add_argument(
        "--recipes", default="seed,tuned", help="comma-separated presets (default: seed,tuned)"
    )
    accuracy.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    accuracy.add_argument(
        "--width", type=float, default=1.0, help="network width (default: 1.0, the reference's)"
    )
    accuracy.add_argument("--train-size", type=int, help="use only the first N images (quick checks)")
    accuracy.add_argument(
        "--batch-size", type=int, help="one batch size for every recipe (default: each recipe's own)"
    )
    accuracy.add_argument("--workspace", default="workspace", help="where the runs go (default: ./workspace)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    from cifarlib.errors import CifarlibError

    try:
        return COMMANDS[args.command](args) or 0
    except (CifarlibError, ValueError, OSError) as error:
        print(f"cifarlib {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"cifarlib {args.command}: interrupted; an unfinished run resumes with the same --run-id",
            file=sys.stderr,
        )
        return 130


def _train(args) -> int:
    from cifarlib.config import PRESETS, RunConfig
    from cifarlib.train import train

    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(RunConfig)
        if getattr(args, f.name) is not None and f.name != "preset"
    }
    preset = args.preset or "seed"
    if preset not in PRESETS:
        raise ValueError(f"--preset must be one of {sorted(PRESETS)}, got {preset!r}")
    if args.fallback_synthetic and overrides.get("data", "keras") == "keras":
        overrides["data"] = _keras_or_synthetic()
    config = RunConfig.from_preset(preset, **overrides)
    result = train(config, args.workspace, run_id=args.run_id, retrain=args.retrain, verbose=2)
    summary = result.summary
    accuracy = summary.get("test_accuracy")
    print(
        f"run {result.run_id}: {summary.get('epochs_run')} epochs, best epoch {summary.get('best_epoch')}, "
        f"test accuracy {'n/a (no test set)' if accuracy is None else f'{accuracy:.4f}'}"
    )
    print(f"saved in {result.run_dir}")
    return 0


def _keras_or_synthetic() -> str:
    from cifarlib.data import download_official
    from cifarlib.errors import DataError

    try:
        download_official()
    except DataError as error:
        print(
            f"CIFAR-10 is not reachable ({error}).\nTraining on SYNTHETIC data instead: the run shows that "
            "everything works, its accuracy says nothing about CIFAR-10.",
            file=sys.stderr,
        )
        return "synthetic"
    return "keras"


def _runs(args) -> int:
    from cifarlib.results import format_runs_table, runs_table

    print(format_runs_table(runs_table(args.workspace, sweep=args.sweep)))
    return 0


def _evaluate(args) -> int:
    from cifarlib.evaluation import describe_tta
    from cifarlib.train import evaluate_run

    result = evaluate_run(
        args.run_id,
        args.workspace,
        data=args.data,
        split=args.split,
        tta=args.tta,
        tta_translate=args.tta_translate,
    )
    print(
        f"run {args.run_id}: {args.split} loss {result['loss']:.4f}, {args.split} accuracy {result['accuracy']:.4f} "
        f"({result['images']} images, {describe_tta(result['tta'], result['tta_translate'])})"
    )
    return 0


def _plots(args) -> int:
    from cifarlib.results import write_plots

    for path in write_plots(args.workspace, sweep=args.sweep, run_id=args.run_id, data=args.data):
        print(path)
    return 0


def _report(args) -> int:
    from cifarlib.system import print_system_report

    print_system_report()
    return 0


def _sweep(args) -> int:
    from cifarlib.sweep import TRAIN_NOTEBOOK, run_sweep

    try:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError as error:
        raise ValueError(
            f"--batch-sizes must be comma-separated integers, got {args.batch_sizes!r}"
        ) from error
    table = run_sweep(
        batch_sizes,
        name=args.name,
        workspace=args.workspace,
        notebook=args.notebook or TRAIN_NOTEBOOK,
        epochs=args.epochs,
        data=args.data,
        preset=args.preset,
        train_size=args.train_size,
        width=args.width,
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
            memory_batches=[int(b) for b in args.memory_batches.split(",")],
        )
    )
    return 0


def _bench_accuracy(args) -> int:
    from cifarlib.bench_accuracy import DEFAULT_DATA, accuracy_benchmark, format_accuracy_table

    data = args.data or DEFAULT_DATA
    try:
        table = accuracy_benchmark(
            data,
            epochs=args.epochs,
            recipes=tuple(args.recipes.split(",")),
            seeds=tuple(int(s) for s in args.seeds.split(",")),
            workspace=args.workspace,
            width=args.width,
            train_size=args.train_size,
            batch_size=args.batch_size,
        )
    except FileNotFoundError as error:
        print(f"bench-accuracy skipped: {error}")
        return 0
    print(format_accuracy_table(table))
    return 0


COMMANDS = {
    "train": _train,
    "runs": _runs,
    "evaluate": _evaluate,
    "report": _report,
    "plots": _plots,
    "sweep": _sweep,
    "bench": _bench,
    "bench-accuracy": _bench_accuracy,
}

if __name__ == "__main__":
    sys.exit(main())
