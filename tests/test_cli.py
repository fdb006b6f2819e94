"""The command line: exit codes, errors that name file and line, check, repeat mode, drop-ins."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from imalys_stac.cli import main, r_imalys, x_imalys


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_check_ok_and_no_work(tmp_path, capsys):
    wd = tmp_path / "wd"
    chain = write(tmp_path / "c.txt", f"IMALYS\nhome\n\tdirectory = {wd}\n\tclear = true\n")
    assert main(["check", str(chain)]) == 0
    assert "ok" in capsys.readouterr().out
    assert not wd.exists()  # check does no work


def test_bad_parameter_exits_nonzero_with_location(tmp_path, capsys):
    chain = write(tmp_path / "bad.txt", "IMALYS\nhome\n\tdirectory = /tmp/x\nreduce\n\tselect = compile\n\texecute = bestof\n\tpreserv = bands\n")
    assert main(["run", str(chain)]) == 1
    err = capsys.readouterr().err
    assert "bad.txt:7" in err and "preserve" in err


def test_clear_refuses_a_foreign_folder(tmp_path, capsys):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "thesis.docx").write_text("years of work")
    chain = write(tmp_path / "c.txt", f"IMALYS\nhome\n\tdirectory = {folder}\n\tclear = true\n")
    assert main(["run", str(chain)]) == 1
    assert "refusing to clear" in capsys.readouterr().err
    assert (folder / "thesis.docx").read_text() == "years of work"


def test_clear_empties_its_own_working_directory(tmp_path):
    wd = tmp_path / "wd"
    chain = write(tmp_path / "c.txt", f"IMALYS\nhome\n\tdirectory = {wd}\n\tclear = true\n")
    assert main(["run", str(chain)]) == 0
    (wd / "old-product").mkdir()
    assert main(["run", str(chain)]) == 0
    assert not (wd / "old-product").exists()
    assert (wd / "catalog.json").exists()


def test_repeat_mode_runs_once_per_line(tmp_path):
    chain = write(tmp_path / "c.txt", f"IMALYS\nreplace\n\t$2 = fixed\nhome\n\tdirectory = {tmp_path}/wd_$1_$2\n")
    lst = write(tmp_path / "list.txt", "a\nb\nc\n")
    assert r_imalys([str(chain), str(lst)]) == 0
    assert sorted(p.name for p in tmp_path.glob("wd_*")) == ["wd_a_fixed", "wd_b_fixed", "wd_c_fixed"]


def test_x_imalys_usage_and_run(tmp_path):
    assert x_imalys([]) == 2
    chain = write(tmp_path / "c.txt", f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd\n")
    assert x_imalys([str(chain)]) == 0


@pytest.mark.system  # the console entry point in a subprocess
def test_console_scripts_help():
    for args in (["-m", "imalys_stac.cli", "--help"], ["-m", "imalys_stac.cli", "run", "--help"]):
        r = subprocess.run([sys.executable, *args], capture_output=True, text=True)
        assert r.returncode == 0 and "chain" in r.stdout.lower()


def test_missing_select_archive_names_line(tmp_path, capsys):
    chain = write(tmp_path / "c.txt", f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd\nimport\n\tselect = {tmp_path}/nothing_here.tar\n")
    assert main(["run", str(chain)]) == 1
    assert "c.txt:5" in capsys.readouterr().err


def test_clear_false_on_a_foreign_folder_never_makes_it_clearable(tmp_path, capsys):
    """Using a user's folder once with clear = false must not mark it as ours."""
    folder = tmp_path / "ESIS"
    (folder / "sub").mkdir(parents=True)
    (folder / "thesis.docx").write_text("years of work")
    keep = write(tmp_path / "keep.txt", f"IMALYS\nhome\n\tdirectory = {folder}\n\tclear = false\n")
    wipe = write(tmp_path / "wipe.txt", f"IMALYS\nhome\n\tdirectory = {folder}\n\tclear = true\n")
    assert main(["run", str(keep)]) == 0
    assert main(["run", str(wipe)]) == 1
    assert "refusing to clear" in capsys.readouterr().err
    assert (folder / "thesis.docx").exists() and (folder / "sub").is_dir()


def test_unwritable_log_is_a_located_error(tmp_path, capsys):
    bad_log = write(tmp_path / "l.txt", f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd\n\tlog = /proc/nolog\n")
    assert main(["run", str(bad_log)]) == 1
    err = capsys.readouterr().err
    assert "l.txt:" in err and "home" in err and "internal error" not in err
