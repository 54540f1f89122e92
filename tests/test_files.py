"""keras_draw.files: a file written whole or not at all, and what a killed writer leaves removed."""

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from keras_draw import files

ROOT = Path(__file__).resolve().parents[1]

# A writer that stops half-way through `atomic_path`, says so, and waits to be killed.
HALF_WRITTEN = """
import sys, time
from keras_draw.files import atomic_path
with atomic_path(sys.argv[1]) as temporary:
    with open(temporary, "w") as f:
        f.write("half")
    print("writing", flush=True)
    time.sleep(300)
"""


def start_writer(path):
    writer = subprocess.Popen([sys.executable, "-c", HALF_WRITTEN, str(path)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    assert writer.stdout.readline().strip() == "writing"
    return writer


def partials(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith(".partial-"))


def test_what_a_killed_writer_left_is_removed_by_the_next_write_and_a_live_ones_is_not(tmp_path):
    killed, live = start_writer(tmp_path / "a.json"), start_writer(tmp_path / "b.json")
    try:
        killed.send_signal(signal.SIGKILL)  # no clean-up code runs
        killed.wait()
        assert len(partials(tmp_path)) == 2
        with files.atomic_path(tmp_path / "c.json") as temporary:
            Path(temporary).write_text("whole")
        left = partials(tmp_path)
        assert len(left) == 1 and (tmp_path / left[0] / "b.json").read_text() == "half"  # the live writer's
        assert (tmp_path / "c.json").read_text() == "whole" and not (tmp_path / "a.json").exists()
    finally:
        live.kill()
        live.wait()
    files.write_json(tmp_path / "d.json", {"whole": True})
    assert partials(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "d.json"]


def test_an_unlocked_partial_folder_is_removed_once_old(tmp_path):
    """Left by a writer that did not lock (an earlier version), or killed before it locked."""
    old, recent = tmp_path / ".partial-old", tmp_path / ".partial-recent"
    for folder in (old, recent):
        folder.mkdir()
        (folder / "model.keras").write_text("half")
    hours_ago = os.stat(old).st_mtime - files.UNLOCKED_PARTIAL_SECONDS - 60
    os.utime(old, (hours_ago, hours_ago))
    files.write_json(tmp_path / "config.json", {})
    assert partials(tmp_path) == [".partial-recent"]


@pytest.mark.parametrize("stop", ["KeyboardInterrupt", "Terminated"])
def test_a_write_stopped_half_way_leaves_the_old_file_and_nothing_else(stop, tmp_path):
    from keras_draw import console

    stop = KeyboardInterrupt if stop == "KeyboardInterrupt" else console.Terminated  # Ctrl-C, SIGTERM
    target = tmp_path / "metrics.csv"
    target.write_text("the old rows")
    with pytest.raises(stop):
        with files.atomic_path(target) as temporary:
            Path(temporary).write_text("half")
            raise stop()
    assert target.read_text() == "the old rows" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]


def test_a_folder_lock_taken_by_a_run_that_stops_having_written_nothing_leaves_nothing(tmp_path):
    (tmp_path / "existing").mkdir()
    for folder in (tmp_path / "existing", tmp_path / "new" / "run"):
        with pytest.raises(KeyboardInterrupt):
            with files.exclusive_folder(str(folder)):
                assert sorted(p.name for p in folder.iterdir()) == [".lock"]
                raise KeyboardInterrupt()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"] and not list((tmp_path / "existing").iterdir())
    with pytest.raises(ValueError, match="stopped"):
        with files.exclusive_folder(str(tmp_path / "existing")):
            (tmp_path / "existing" / "config.json").write_text("{}")
            raise ValueError("stopped after writing")
    assert sorted(p.name for p in (tmp_path / "existing").iterdir()) == [".lock", "config.json"]


@pytest.mark.parametrize("make, kind", [(os.mkfifo, "a FIFO"), (os.mkdir, "a folder"),
                                        (lambda p: os.mknod(p, 0o600 | stat.S_IFCHR, os.makedev(1, 3)),
                                         "a character device")])
def test_a_write_refuses_to_put_a_file_in_place_of_a_fifo_a_folder_or_a_device(make, kind, tmp_path):
    path = tmp_path / "out.json"
    try:
        make(path)
    except PermissionError:
        pytest.skip("making a device node needs root")
    with pytest.raises(ValueError, match=rf"out.json is {kind}, not a file to write; it is left as it is"):
        files.write_json(path, {"a": 1})
    mode = os.lstat(path).st_mode
    assert {"a FIFO": stat.S_ISFIFO, "a folder": stat.S_ISDIR, "a character device": stat.S_ISCHR}[kind](mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # no partial folder either


def test_a_write_replaces_a_regular_file(tmp_path):
    (tmp_path / "old.json").write_text("{}")
    files.write_json(tmp_path / "old.json", {"a": 1})
    assert files.read_json(tmp_path / "old.json") == {"a": 1}
