"""The run folder: its files, atomic JSON, and what --resume refuses."""

import json

import numpy as np
import pytest

from lawfinder.errors import UserError
from lawfinder.runfolder import RunFolder, run_folder, write_json


def test_write_json_keeps_numbers_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "deep" / "row.json"
    write_json(path, {"a": np.float32(0.5), "b": np.int64(3), "c": [1.0, float("inf")]})
    assert json.loads(path.read_text()) == {"a": 0.5, "b": 3, "c": [1.0, float("inf")]}
    assert [p.name for p in path.parent.iterdir()] == ["row.json"]


def test_resume_names_the_nested_setting_that_differs(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.claim({"system": "spring", "ranking": {"seeds": 5, "epochs": 100}}, resume=False)
    run.claim({"system": "spring", "ranking": {"seeds": 5, "epochs": 100}}, resume=True)
    with pytest.raises(UserError, match=r"differs in ranking\.seeds\)"):
        run.claim({"system": "spring", "ranking": {"seeds": 3, "epochs": 100}}, resume=True)
    with pytest.raises(UserError, match=r"differs in fit, ranking\.epochs"):
        run.claim({"system": "spring", "ranking": {"seeds": 5}, "fit": 1}, resume=True)


def test_resume_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a lawfinder run folder"):
        RunFolder(tmp_path).claim({"system": "spring"}, resume=True)


def test_checkpoints_made_with_other_settings_are_refused(tmp_path):
    run = RunFolder(tmp_path)
    run.check_settings(run.chunks, {"seed": 0, "n_formulas": 10}, resume=False)
    run.check_settings(run.chunks, {"seed": 0, "n_formulas": 10}, resume=True)
    with pytest.raises(UserError, match=r"other settings \(seed\)"):
        run.check_settings(run.chunks, {"seed": 1, "n_formulas": 10}, resume=True)


def test_a_summary_path_names_its_folder(tmp_path):
    (tmp_path / "summary.json").write_text("{}")
    assert run_folder(tmp_path / "summary.json").path == tmp_path
    with pytest.raises(UserError, match="not a search or tailor run"):
        run_folder(tmp_path).load_summary()
