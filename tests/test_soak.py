"""The soak's checks on hand-made run folders, and one real kill through ``python -m cifarlib.soak``."""

import json
import zipfile

import pytest

from cifarlib import soak, storage


def make_run(tmp_path, epochs=(1, 2), backup_epoch=2, model_bytes=None):
    run_dir = tmp_path / "runs" / "r"
    (run_dir / "backup").mkdir(parents=True)
    (run_dir / "config.json").write_text("{}")
    (run_dir / "history.csv").write_text("epoch,loss\n" + "".join(f"{e},1.0\n" for e in epochs))
    (run_dir / "backup" / "training_metadata.json").write_text(json.dumps({"epoch": backup_epoch}))
    with zipfile.ZipFile(run_dir / "best.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    if model_bytes is not None:
        (run_dir / "best.keras").write_bytes(model_bytes)
    return run_dir


def test_a_whole_run_folder_passes(tmp_path):
    found = soak.inspect_run(make_run(tmp_path))
    assert found.corrupt == [] and not found.gap and found.resumable_epochs == 2 and found.temporaries == []


def test_gaps_corrupt_files_and_temporaries_are_seen(tmp_path):
    run_dir = make_run(tmp_path, epochs=(1, 3), model_bytes=b"PK\x03\x04 torn")
    (run_dir / "summary.json").write_text('{"epochs_run": ')
    (run_dir / ".history.csv.tmp-42").write_text("")
    found = soak.inspect_run(run_dir)
    assert found.gap
    assert sorted(found.corrupt) == ["best.keras", "summary.json"]
    assert found.temporaries == [".history.csv.tmp-42"]


def test_the_soak_reads_the_lines_train_prints():
    from cifarlib.callbacks import describe_epoch

    assert soak.EPOCH_DONE.match(describe_epoch(3, 10, {"loss": 0.5, "accuracy": 0.9, "seconds": 1.0}))
    assert soak.EPOCH_STARTED.match("run soak-1: new run of 2 epochs in /tmp/ws/runs/soak-1")
    assert soak.EPOCH_STARTED.match("run soak-1: resuming the unfinished run after epoch 1 of 2 in /tmp/ws")


@pytest.mark.slow
def test_one_real_kill(tmp_path, capsys):
    totals = soak.soak(1, workspace=tmp_path / "ws", epochs=2, train_size=64, width=0.1, batch_size=32)
    out = capsys.readouterr().out
    assert totals["kills"] == 1
    # The kill time is drawn within the uninterrupted run's training time; a run that happens to finish sooner
    # (the machine's load varies) is not killed, and the soak starts the next run: the last one took the kill.
    killed = f"soak-{totals['runs']}"
    assert f"kill  1 ({killed}): resumable at epoch" in out
    assert f"{killed} finished: epochs_run 2, history [1, 2], temporary files none" in out
    assert totals["corrupt_files"] == totals["history_gaps"] == totals["resume_failures"] == 0
    assert totals["epochs_lost_max"] == 0
    for run in range(1, totals["runs"] + 1):
        summary = storage.RunFolder(tmp_path / "ws" / "runs" / f"soak-{run}").read_json("summary.json")
        assert summary["epochs_run"] == 2
