"""The demo's command line refuses a ``--json`` path it could not write before anything starts,
and never creates folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcresolve.demo.cli import _parse_args, json_path_problem


def test_json_into_a_missing_folder_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing" / "out.json"
    with pytest.raises(SystemExit) as exited:
        _parse_args(["--json", str(target)])
    assert exited.value.code == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()


def test_json_path_checks(tmp_path: Path) -> None:
    assert json_path_problem(tmp_path / "out.json") == ""
    assert "is a folder" in json_path_problem(tmp_path)
    assert _parse_args(["--json", str(tmp_path / "out.json")]).json == tmp_path / "out.json"


def test_wide_is_an_option() -> None:
    assert _parse_args(["--wide"]).wide is True
    assert _parse_args([]).wide is False
