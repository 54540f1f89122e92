"""keras_draw.malloc: when train.py re-runs itself with TCMalloc preloaded, and that it does."""

import os
import subprocess
import sys
import textwrap

import pytest

from keras_draw import malloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def libraries(tmp_path):
    """Two files standing for installed libraries, and a path where none is."""
    first, second = tmp_path / "libtcmalloc_minimal.so.4", tmp_path / "other" / "libtcmalloc_minimal.so.4"
    second.parent.mkdir()
    first.write_bytes(b""), second.write_bytes(b"")
    return str(tmp_path / "missing.so"), str(first), str(second)


def test_the_first_installed_library_is_preloaded_before_any_other(libraries):
    missing, first, second = libraries
    environ = malloc.preload({"LD_PRELOAD": "/opt/a.so:/opt/b.so", "HOME": "/h"}, candidates=(missing, first, second),
                             platform="linux")
    assert environ == {"LD_PRELOAD": f"{first}:/opt/a.so:/opt/b.so", "HOME": "/h"}
    assert malloc.preload({}, candidates=(missing, second, first), platform="linux") == {"LD_PRELOAD": second}


@pytest.mark.parametrize("environ, platform", [
    ({}, "darwin"),  # LD_PRELOAD is Linux's
    ({"KERAS_DRAW_MALLOC": "system"}, "linux"),
    ({"LD_PRELOAD": "FIRST"}, "linux"),  # the re-run itself: it must not re-run again
])
def test_nothing_is_rerun_off_linux_when_asked_or_once_preloaded(libraries, environ, platform):
    _, first, _ = libraries
    environ = {k: v.replace("FIRST", first) for k, v in environ.items()}
    assert malloc.preload(environ, candidates=(first,), platform=platform) is None


def test_nothing_is_rerun_where_no_library_is_installed(libraries):
    missing, _, _ = libraries
    assert malloc.preload({"LD_PRELOAD": "/opt/a.so"}, candidates=(missing,), platform="linux") is None


def test_the_variable_names_another_library_or_fails_in_one_line_for_a_missing_file(libraries):
    missing, first, second = libraries
    assert malloc.preload({"KERAS_DRAW_MALLOC": second}, candidates=(first,), platform="linux") == {
        "KERAS_DRAW_MALLOC": second, "LD_PRELOAD": second}
    with pytest.raises(ValueError, match="KERAS_DRAW_MALLOC must be 'system' or the path of a malloc library. "
                                         "Received: KERAS_DRAW_MALLOC='.*missing.so', which is no file"):
        malloc.preload({"KERAS_DRAW_MALLOC": missing}, candidates=(first,), platform="linux")


def test_the_active_library_is_read_from_ld_preload(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/opt/libfoo.so:/usr/lib/libjemalloc.so.2")
    assert malloc.active() == "/usr/lib/libjemalloc.so.2"
    monkeypatch.setenv("LD_PRELOAD", "/opt/libfoo.so")
    assert malloc.active() == "system"
    monkeypatch.delenv("LD_PRELOAD")
    assert malloc.active() == "system"


def _loaded_libc():
    """The path of the C library this process runs on (harmless to preload), from its maps."""
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "/libc.so" in line or "/libc-" in line}
    return sorted(paths)[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux's")
def test_the_process_reruns_once_with_the_library_preloaded_and_its_arguments_kept(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {ROOT!r})
        from keras_draw import malloc
        print("run", os.environ.get("LD_PRELOAD", ""), sys.argv[1:], flush=True)
        malloc.rerun_preloaded()
        print("went on")
    """))
    libc = _loaded_libc()
    environ = {**os.environ, "KERAS_DRAW_MALLOC": libc}
    environ.pop("LD_PRELOAD", None)
    done = subprocess.run([sys.executable, "-u", str(script), "a", "--b"], env=environ, capture_output=True,
                          text=True, check=True)
    # The first run printed, then became the second, which went on.
    assert done.stdout.splitlines() == ["run  ['a', '--b']", f"run {libc} ['a', '--b']", "went on"]


def test_train_py_refuses_a_missing_library_in_one_line_before_anything_else(tmp_path):
    environ = {**os.environ, "KERAS_DRAW_MALLOC": str(tmp_path / "nope.so")}
    done = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--output-dir", str(tmp_path / "run")],
                          env=environ, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"train.py: error: KERAS_DRAW_MALLOC must be 'system' or the path of a "
                                        f"malloc library. Received: KERAS_DRAW_MALLOC={str(tmp_path / 'nope.so')!r}, "
                                        "which is no file"]
    assert not (tmp_path / "run").exists()
