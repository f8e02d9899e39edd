"""Every magic shows a mistake as one line naming it (IPython's UsageError), never a
traceback: an unknown job, endpoint or model, a refused option."""

from __future__ import annotations

import pytest

from conftest import run_cell

LINES = [
    ("%kf_jobs no-such-job", "no job 'no-such-job'"),
    ("%kf_jobs no-such-job --cancel", "no job 'no-such-job'"),
    ("%kf_deploy nosuch@production", "nosuch"),
    ("%kf_deploy --undeploy nosuch", "no endpoint named 'nosuch'"),
    ("%kf_deploy --promote nosuch", "no endpoint named 'nosuch'"),
    ("%kf_models show nope", "no registered model 'nope'"),
    ("%kf_pipeline show no-such-run", "no-such-run"),
]


@pytest.mark.parametrize("line, message", LINES)
def test_a_magic_mistake_is_one_line_naming_it(shell, capsys, line, message):
    result = run_cell(shell, line)
    assert not result.success
    assert type(result.error_in_exec).__name__ == "UsageError", repr(result.error_in_exec)
    assert message in str(result.error_in_exec)
    shown = capsys.readouterr()
    text = shown.out + shown.err
    assert "Traceback" not in text and "---------" not in text, text
    assert message in text
