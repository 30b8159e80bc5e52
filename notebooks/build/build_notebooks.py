"""Writes the five notebooks from one template, so that their shared cells are identical.

Every notebook has the same skeleton: a title with its Open-in-Colab badge, the setup cell (the source of
``setup_cell.py``, copied verbatim), one imports cell, one cell tagged ``parameters``, one settings cell that
passes the parameters through ``cifarlib.notebook_parameters``, then its own steps, each a short explanation and
a short call into cifarlib. Only the steps differ, and they are written below.

Run ``make notebooks`` (or ``python notebooks/build/build_notebooks.py``) after changing this file or
``setup_cell.py``; ``tests/test_notebook_template.py`` fails while the committed notebooks differ from what this
script writes. Cells whose output nbval checks carry that output here (it is a fact the notebook must print);
every other code cell starts with ``# NBVAL_IGNORE_OUTPUT`` and is written without output.
"""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

# The notebooks it writes; this script and setup_cell.py sit in build/ below them, so the wheel, which ships
# the notebooks folder's .ipynb files, carries neither.
FOLDER = Path(__file__).resolve().parent.parent
# The checkout's cifarlib, whichever copy is installed: the notebooks are built from this repository's facts.
sys.path.insert(0, str(FOLDER.parent))
BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"
IGNORE_OUTPUT = "# NBVAL_IGNORE_OUTPUT"
LINE_LENGTH = 110
METADATA = {
    "accelerator": "GPU",
    "colab": {"provenance": []},
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}
SETUP_TEXT = (
    "**Setup.** Installs cifarlib where it is missing (in Colab, from GitHub) and never touches Colab's "
    "TensorFlow. Nothing to look at unless it fails."
)
SETTINGS_TEXT = (
    "**Settings.** Collects the parameters; where `$CIFARLIB_NOTEBOOK_PARAMS` is set (CI only) its small values "
    "replace them."
)


@dataclass
class Step:
    """One explained step: its markdown, its code, and (only where nbval checks it) the output it must print."""

    text: str
    code: str
    checked_output: str | None = None


@dataclass
class Notebook:
    name: str
    title: str
    intro: str
    imports: str
    parameters_text: str
    parameters: list[tuple[str, object, str]]  # name, default, comment
    steps: list[Step]
    settings: str = ""  # lines after the notebook_parameters call
    extra: dict = field(default_factory=dict)


def ignored(code: str) -> str:
    return f"{IGNORE_OUTPUT}\n{code}"


WORKSPACE_PARAMETERS = [
    (
        "workspace",
        None,
        "local folder; None: Google Drive in Colab, else $CIFARLIB_HOME or ~/cifarlib-workspace",
    ),
    ("drive_folder", "cifarlib", "folder under MyDrive (Colab only)"),
]
OPEN_WORKSPACE = "ws = cifarlib.open_workspace(params.workspace, drive_folder=params.drive_folder)"

NOTEBOOKS = [
    Notebook(
        name="00_gpu_check",
        title="00 · GPU check",
        intro=(
            "What this runtime has to train with: the GPU (or TPU, or none), its memory and utilisation, RAM and "
            "this process's size. In Colab pick *Runtime → Change runtime type → GPU* first."
        ),
        imports="import cifarlib",
        parameters_text=(
            "**Parameters.** Set `require_accelerator = True` to stop here when the runtime has no GPU or TPU "
            "(useful before a long sweep)."
        ),
        parameters=[("require_accelerator", False, "raise an error when neither a GPU nor a TPU is present")],
        steps=[
            Step(
                "**The report.** Look for the GPU's name and its free memory: the memory estimate in `03_train` "
                "is compared with it. On a CPU-only runtime it says so plainly.",
                ignored("report = cifarlib.print_system_report()"),
            ),
            Step(
                "**Accelerator check.** Names the accelerator training will use.",
                ignored(
                    "print(cifarlib.system.accelerator_summary(report, required=params.require_accelerator))"
                ),
            ),
        ],
    ),
    Notebook(
        name="01_drive",
        title="01 · Google Drive workspace",
        intro=(
            "Mounts Google Drive (in Colab) and opens the workspace where runs, checkpoints and logs are kept, so "
            "nothing is lost when the runtime disconnects. Outside Colab it uses a local folder."
        ),
        imports="import cifarlib\nfrom cifarlib import results",
        parameters_text=(
            "**Parameters.** `workspace` is a local folder (leave `None` in Colab to use "
            "`MyDrive/<drive_folder>`); `drive_folder` names the folder under *MyDrive*."
        ),
        parameters=WORKSPACE_PARAMETERS,
        steps=[
            Step(
                "**Open the workspace.** In Colab this asks for Drive access once (never paste the authorisation "
                "code into a cell).",
                ignored(f"{OPEN_WORKSPACE}\nprint(ws.root)"),
            ),
            Step(
                "**Runs so far**, oldest first. An unfinished run resumes when `03_train` is run again with the "
                "same settings.",
                ignored("table = results.runs_table(ws)\nprint(results.describe_runs(table, ws))"),
            ),
        ],
    ),
    Notebook(
        name="02_explore_data",
        title="02 · Explore CIFAR-10",
        intro=(
            "Loads CIFAR-10 and looks at it: the arrays, classes and their counts, a grid of samples (one row per "
            "class), what the training augmentation does to an image, one image in colour and in grayscale, and "
            "the pixel statistics used for normalisation."
        ),
        imports="import cifarlib\nfrom cifarlib import explore",
        parameters_text=(
            '**Parameters.** `data` is `"keras"` (download), a path to `cifar-10-python.tar.gz`, an extracted '
            'folder, an image folder, or `"synthetic"`; `crop_padding` is the augmentation\'s crop size in '
            "pixels (`None`: the default recipe's)."
        ),
        parameters=[
            ("data", "keras", "data source"),
            ("crop_padding", None, "pixels of random-crop padding to show; None: the default recipe's"),
            ("seed", 0, "picks the sample images"),
        ],
        steps=[
            Step(
                "**Load.** Images stay `uint8` with shape (images, height, width, channels), labels integers.",
                ignored(
                    "(x_train, y_train), (x_test, y_test) = cifarlib.load_cifar10(params.data)\n"
                    'print("training:", explore.describe_split(x_train, y_train))\n'
                    'print("test:    ", explore.describe_split(x_test, y_test))'
                ),
            ),
            Step(
                "**Format and classes.** This cell's output is checked in CI: any change to the image size, type "
                "or class names fails the build.",
                'print("training:", explore.describe_format(x_train, y_train))\n'
                'print("test:    ", explore.describe_format(x_test, y_test))\n'
                'print("classes:", ", ".join(cifarlib.CLASS_NAMES))',
                checked_output=(
                    "training: each image 32x32 pixels, 3 channels, uint8 (0 to 255); labels integers 0..9, "
                    "10 classes\n"
                    "test:     each image 32x32 pixels, 3 channels, uint8 (0 to 255); labels integers 0..9, "
                    "10 classes\n"
                    "classes: airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck\n"
                ),
            ),
            Step(
                "**Class counts.** CIFAR-10 is balanced: 5,000 training and 1,000 test images per class.",
                ignored("explore.class_count_table(y_train, y_test)"),
            ),
            Step(
                "**Samples.** Ten random training images per class: note how small 32x32 is, and how similar cats "
                "and dogs, or automobiles and trucks, look.",
                ignored("explore.plot_sample_grid(x_train, y_train, seed=params.seed);"),
            ),
            Step(
                "**Augmentation.** What the network sees in training: each image shifted by a random crop from a "
                "reflect-padded copy, and mirrored half the time; a new draw every epoch. Evaluation sees the "
                "original.",
                ignored(
                    "explore.plot_augmented(x_train, y_train, padding=explore.crop_padding(params.crop_padding), "
                    "seed=params.seed);"
                ),
            ),
            Step(
                "**Colour and grayscale.** Grayscale is `0.299 R + 0.587 G + 0.114 B`; training on it "
                "(`grayscale=True` in `RunConfig`) costs accuracy, since colour tells frogs from ships.",
                ignored("explore.plot_color_and_gray(x_train[0], title=cifarlib.CLASS_NAMES[y_train[0]]);"),
            ),
            Step(
                "**Pixel statistics** per channel, in [0, 1] units: the tuned recipe normalises with these.",
                ignored("explore.pixel_statistics(x_train)"),
            ),
        ],
    ),
    Notebook(
        name="03_train",
        title="03 · Train",
        intro=(
            "Trains one run and saves it to the workspace: the model, its memory estimate, training with live "
            "progress, its curves, the test accuracy, and where everything was saved. After a disconnect, run "
            "the notebook again with the same settings: it resumes from the last finished epoch. Sweeps execute "
            "this notebook with papermill, once per batch size."
        ),
        imports=(
            "import cifarlib\n"
            "from cifarlib import results\n"
            "from cifarlib.bench import forward_multiply_adds\n"
            "from cifarlib.config import RunConfig\n"
            "from cifarlib.formatting import format_accuracy\n"
            "from cifarlib.memory import run_memory_estimate\n"
            "from cifarlib.train import train"
        ),
        parameters_text=(
            '**Parameters.** `preset` picks the recipe: `"tuned"` (cifarlib\'s accuracy recipe) or '
            "`\"reference\"` (the 2019 notebook's). `None` keeps the preset's value; `train_size` takes the "
            "first N training images for a quick run; `run_id` names the run; `None` names it after its "
            "settings, so running the notebook again resumes it."
        ),
        parameters=[
            ("preset", "tuned", '"tuned" (cifarlib\'s recipe) or "reference" (the 2019 notebook\'s)'),
            ("data", "keras", "data source, as in 02_explore_data"),
            ("batch_size", None, "images per step; None: the preset's"),
            ("epochs", None, "training epochs; None: the preset's"),
            ("train_size", None, "first N training images; None: all"),
            ("width", 1.0, "scales every filter count (1.0: the reference network's widths)"),
            ("run_id", None, "names or resumes a run; None: train's default id for these settings"),
            # A kernel cannot tell whether a person watches it (Colab, Jupyter) or papermill runs it headless, so
            # "auto" gives the bar either way; papermill callers pass 2 to save no bar in the executed notebook.
            (
                "verbose",
                "auto",
                '"auto": a progress bar; 2: one line per epoch (with papermill: -p verbose 2, as sweeps do)',
            ),
            *WORKSPACE_PARAMETERS,
        ],
        settings=(
            "chosen = dict(batch_size=params.batch_size, epochs=params.epochs, train_size=params.train_size)\n"
            "config = RunConfig.from_preset(\n"
            "    params.preset, data=params.data, width=params.width,\n"
            "    **{name: value for name, value in chosen.items() if value is not None},\n"
            ")\n"
            f"{OPEN_WORKSPACE}"
        ),
        steps=[
            Step(
                "**The reference network** (the 2019 notebook's, whatever this run trains). Checked in CI: "
                "1,420,834 parameters, and the reference's memory formula gives 1.47 GiB at batch 128 (it "
                "multiplies the parameters by the batch; see `cifarlib/memory.py`).",
                'reference = cifarlib.build_model(RunConfig.from_preset("reference"))\n'
                'print(f"reference network: {reference.count_params():,} parameters")\n'
                'print(f"reference memory formula at batch 128: '
                "{cifarlib.estimate_memory(reference, 128, method='reference'):.2f} GiB\")",
                checked_output=(
                    "reference network: 1,420,834 parameters\nreference memory formula at batch 128: 1.47 GiB\n"
                ),
            ),
            Step(
                "**This run's model**, in short: its size, its work per image, and the training memory estimate "
                "(parameters, gradients, optimizer state and activations); compare it with the GPU's free memory "
                "from `00_gpu_check`.",
                ignored(
                    "model = cifarlib.build_model(config)\n"
                    'print(f"{config.preset} network, width {config.width:g}: {model.count_params():,} parameters, "\n'
                    '      f"{forward_multiply_adds(model) / 1e6:,.0f} million multiply-adds per image")\n'
                    'print(f"training memory estimate at batch {config.batch_size}: '
                    '{run_memory_estimate(model, config):.2f} GiB")'
                ),
            ),
            Step(
                "**Train.** The first line names the recipe, the image counts, the device and the run folder; then "
                "a progress bar and a line per epoch with its seconds and learning rate. The run folder is updated "
                "after every epoch.",
                ignored("result = train(config, ws, run_id=params.run_id, verbose=params.verbose)"),
            ),
            Step(
                "**Curves** of this run: solid lines train, dashed validate. A widening gap means over-fitting.",
                ignored("results.plot_run_curves(ws, result.run_id);"),
            ),
            Step(
                "**Test accuracy** of the best checkpoint (categorical accuracy, not the reference's binary one).",
                ignored(
                    "print(f\"run {result.run_id}: best epoch {result.summary['best_epoch']} of "
                    "{result.summary['epochs_run']}, \"\n"
                    "      f\"test accuracy {format_accuracy(result.test_accuracy, missing='n/a (no test images)')}\")"
                ),
            ),
            Step(
                "**TensorBoard.** In Colab this opens TensorBoard on every run's logs inside the notebook; "
                "elsewhere it prints the command to run in a terminal.",
                ignored(
                    "if cifarlib.storage.in_colab():\n"
                    "    %load_ext tensorboard\n"
                    "    %tensorboard --logdir {ws.runs_dir}\n"
                    "else:\n"
                    '    print(f"tensorboard --logdir {ws.runs_dir}")'
                ),
            ),
            Step(
                "**Where it was saved.** `best.keras`, `history.csv`, `tensorboard/` and `summary.json` are in this "
                "folder; `04_results` compares runs.",
                ignored("print(result.run_dir)"),
            ),
            Step(
                "**Use the trained network.** `best.keras` loads with plain Keras, without cifarlib. It takes raw "
                "0-255 pixels, shape (N, 32, 32, 3), and standardises them itself: dividing by 255 first, the "
                "usual Keras habit, silently gives other answers. "
                "`cifarlib.evaluation.predict_probabilities` averages the test-time augmentation views that the "
                "reported accuracy uses. For image files, `python -m cifarlib predict RUN_ID IMAGE_OR_FOLDER` does "
                "the same; `network.export(folder)` writes a SavedModel for serving (see the README).",
                ignored(
                    "import keras\n"
                    "from cifarlib.data import CLASS_NAMES, load_run_splits\n"
                    "from cifarlib.evaluation import predict_probabilities\n\n"
                    'network = keras.models.load_model(result.run_dir / "best.keras")\n'
                    "_, (images, labels), _ = load_run_splits(config)  # this run's own validation images\n"
                    "probabilities = predict_probabilities(\n"
                    "    network, images[:8], tta=config.tta, tta_translate=config.tta_translate\n"
                    ")\n"
                    'print("predicted:", ", ".join(f"{CLASS_NAMES[p.argmax()]} ({p.max():.0%})" for p in probabilities))\n'
                    'print("true:     ", ", ".join(CLASS_NAMES[label] for label in labels[:8]))'
                ),
            ),
        ],
    ),
    Notebook(
        name="04_results",
        title="04 · Results",
        intro=(
            "Compares the runs of the newest sweep (or every run, where there is no sweep), oldest first: a "
            "table, training and validation curves, the batch-size analysis (steady seconds per epoch, epochs to "
            "the best one, total time and accuracy against batch size, seeds averaged), then the confusion matrix, per-class accuracy and misclassified test images of one "
            "run. `python -m cifarlib plots` writes the same plots, through the same functions, as PNG files (in "
            "the sweep's folder, or in `plots/` of the workspace and of the run)."
        ),
        imports="import cifarlib\nfrom cifarlib import results",
        parameters_text=(
            "**Parameters.** `sweep` names the sweep to compare (`None`: the newest one); `all_runs` compares "
            "every run instead; `run_id` picks the run to analyse "
            "in detail (`None`: the newest completed run of the selection); `data` overrides its data source."
        ),
        parameters=[
            *WORKSPACE_PARAMETERS,
            ("sweep", None, "name of a sweep; None: the newest sweep"),
            ("all_runs", False, "True: compare every run, not one sweep's"),
            ("run_id", None, "run for the confusion matrix; None: the newest completed run"),
            ("data", None, "data source for its test images; None: the run's own"),
        ],
        settings=(
            f"{OPEN_WORKSPACE}\nsweep = results.chosen_sweep(ws, params.sweep, all_runs=params.all_runs)\n"
            "plots = results.plots_dir(ws, sweep=sweep)"
        ),
        steps=[
            Step(
                "**Every run**, oldest first: status, recipe, best validation accuracy (of the saved checkpoint), "
                "test accuracy, seconds per epoch and total time.",
                ignored(
                    "table = results.runs_table(ws, sweep=sweep)\n"
                    "print(results.describe_runs(table, ws, sweep=sweep))"
                ),
            ),
            Step(
                "**Curves.** Solid lines train, dashed validate. A widening gap means over-fitting.",
                ignored("results.curves_section(ws, table, plots, sweep=sweep);"),
            ),
            Step(
                "**Batch size.** Runs are compared only with runs of the same settings but batch size: each "
                "group is named by what sets it apart. Seeds are replicates: each point is their mean, `seeds` "
                "counts them and `val_spread` gives their range. Seconds per epoch are steady-state (the first "
                "epoch of each start, which compiles, is counted as start-up). Larger batches run faster per epoch but may need more epochs; the last panel shows what that "
                "costs in accuracy. With a single batch size there is no trend to draw, only the table.",
                ignored(
                    "print(results.describe_batch_sizes(table))\nresults.batch_size_section(table, plots);"
                ),
            ),
            Step(
                "**One run in detail.** The confusion matrix shows which classes are confused (cat and dog, "
                "usually).",
                ignored(
                    "detail = results.load_run_detail(ws, table, run_id=params.run_id, data=params.data)\n"
                    "results.confusion_matrix_section(detail);"
                ),
            ),
            Step(
                "**Per-class accuracy**: the diagonal of the matrix over its row sums.",
                ignored("print(results.format_per_class_accuracy(detail))"),
            ),
            Step(
                "**Misclassified test images**, most confident mistakes first.",
                ignored("results.misclassified_section(detail);"),
            ),
        ],
    ),
]


def literal(value) -> str:
    """A Python literal for a parameter's default, strings in double quotes as ruff format writes them."""
    return f'"{value}"' if isinstance(value, str) else repr(value)


def parameters_cell(parameters: list[tuple[str, object, str]]) -> str:
    return "\n".join(f"{name} = {literal(default)}  # {comment}" for name, default, comment in parameters)


def settings_cell(notebook: Notebook) -> str:
    arguments = [f'"{notebook.name}"', *(f"{name}={name}" for name, _, _ in notebook.parameters)]
    call = f"params = cifarlib.notebook_parameters({', '.join(arguments)})"
    if len(call) > LINE_LENGTH:
        # Several arguments per line, so the cell stays short.
        packed = textwrap.fill(
            ", ".join(arguments),
            LINE_LENGTH,
            initial_indent="    ",
            subsequent_indent="    ",
            break_on_hyphens=False,
        )
        call = f"params = cifarlib.notebook_parameters(\n{packed},\n)"
    return f"{call}\n{notebook.settings}" if notebook.settings else call


def setup_source() -> str:
    """The setup cell: ``setup_cell.py`` with the repository's address (``pyproject.toml``) filled in."""
    from cifarlib.project import setup_cell_source

    return setup_cell_source()


def colab_link(name: str) -> str:
    """The Open-in-Colab address of ``notebooks/<name>.ipynb``, from the repository's address."""
    from cifarlib.project import colab_url

    return colab_url(f"{name}.ipynb")


def build(notebook: Notebook) -> nbformat.NotebookNode:
    """The notebook as nbformat writes it, with stable cell ids (so a rebuild changes nothing)."""
    v4 = nbformat.v4
    url = colab_link(notebook.name)
    cells = [
        v4.new_markdown_cell(f"# {notebook.title}\n\n{BADGE.format(url=url)}\n\n{notebook.intro}"),
        v4.new_markdown_cell(SETUP_TEXT),
        v4.new_code_cell(setup_source()),
        v4.new_markdown_cell("**Imports.**"),
        v4.new_code_cell(notebook.imports),
        v4.new_markdown_cell(notebook.parameters_text),
        v4.new_code_cell(parameters_cell(notebook.parameters), metadata={"tags": ["parameters"]}),
        v4.new_markdown_cell(SETTINGS_TEXT),
        v4.new_code_cell(settings_cell(notebook)),
    ]
    for step in notebook.steps:
        cells.append(v4.new_markdown_cell(step.text))
        code = v4.new_code_cell(step.code)
        if step.checked_output is not None:
            # nbval compares this output; it needs an execution count to treat the cell as executed.
            code.execution_count = 1
            code.outputs = [v4.new_output("stream", name="stdout", text=step.checked_output)]
        cells.append(code)
    for index, cell in enumerate(cells):
        cell.id = f"{notebook.name[:2]}-{index:02d}"
    return v4.new_notebook(cells=cells, metadata=METADATA)


def render(notebook: Notebook) -> str:
    return nbformat.writes(build(notebook)) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write every notebook; with ``--check``, only report (exit status 1) the ones that differ."""
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    stale = []
    for notebook in NOTEBOOKS:
        path = FOLDER / f"{notebook.name}.ipynb"
        text = render(notebook)
        if path.is_file() and path.read_text() == text:
            continue
        stale.append(path)
        if not check:
            path.write_text(text)
    for path in stale:
        print(f"{'differs from the template' if check else 'written'}: {path}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
