"""A failed job's traceback reads as the notebook's author wrote the code: the
launcher's frames (kfjupyter's bootstrap, runpy) are gone and the program's frames are
named by cell line or as captured from the notebook; the raw text is kept."""

from __future__ import annotations

import pytest

import kfjupyter
from kfjupyter import status as st
from kfjupyter.jobs import JobFailedError
from kfjupyter.capture.tracebacks import cell_start, readable

PROGRAM = """# kfjupyter program of job j (2 worker(s))
import os


def helper(x):
    return 1 / x


# --- the cell ---
r = int(os.environ["RANK"])
if r == 1:
    helper(0)
"""

RAW = """rank 1 exited with code 1
Traceback (most recent call last):
  File "/home/u/jobs/j/bundle/kf_bootstrap.py", line 403, in main
    run_program(bundle)
  File "/home/u/jobs/j/bundle/kf_bootstrap.py", line 387, in run_program
    return runpy.run_path(str(bundle / "program.py"), init_globals=values, run_name=run_name)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "<frozen runpy>", line 291, in run_path
  File "<frozen runpy>", line 98, in _run_module_code
  File "<frozen runpy>", line 88, in _run_code
  File "/home/u/jobs/j/bundle/program.py", line 12, in <module>
    helper(0)
  File "/home/u/jobs/j/bundle/program.py", line 6, in helper
    return 1 / x
           ~~^~~
ZeroDivisionError: division by zero"""


def test_the_cell_starts_below_its_marker():
    assert cell_start(PROGRAM) == 10
    assert cell_start("print(1)") is None


def test_launcher_frames_go_and_program_frames_are_named_by_where_they_came_from():
    text = readable(RAW, PROGRAM, where="nb.ipynb, the %%kf_train cell")
    assert "kf_bootstrap" not in text and "runpy" not in text
    assert "Cell (nb.ipynb, the %%kf_train cell), line 3, in <module>" in text
    assert "    helper(0)" in text
    assert "Captured from the notebook (program.py, line 6), in helper" in text
    assert "    return 1 / x" in text
    assert text.startswith("rank 1 exited with code 1\nTraceback (most recent call last):")
    assert text.endswith("ZeroDivisionError: division by zero")


def test_frames_of_other_files_and_text_without_frames_are_left_as_they_are():
    other = 'Traceback (most recent call last):\n  File "/usr/lib/python3.11/json/__init__.py", line 1, in loads\n    x\nValueError: bad'
    assert readable(other, PROGRAM) == other
    step = 'Traceback (most recent call last):\n  File "/h/jobs/p/steps/prep/program.py", line 3, in <module>\n    x\nValueError: bad'
    assert readable(step, PROGRAM) == step  # a pipeline step's program says its cells itself
    assert readable("rank 0 killed by signal 9", PROGRAM) == "rank 0 killed by signal 9"
    assert readable("", None) == ""


def test_without_the_program_its_frames_still_lose_the_launcher(tmp_path):
    text = readable(RAW, None)
    assert "runpy" not in text
    assert "Captured from the notebook (program.py, line 12), in <module>" in text


BODY = """import os
r = int(os.environ["RANK"])
print("rank", r, flush=True)
if r == 1:
    helper(0)
"""


@pytest.mark.slow
def test_a_failed_job_names_its_failing_rank_and_the_cell_line(shell):
    assert shell.run_cell("def helper(x):\n    return 1 / x").success
    job = kfjupyter.train(BODY, workers=2, name="tb", user_ns=shell.user_ns)
    with pytest.raises(JobFailedError) as failed:
        job.wait(timeout=120)
    assert job.status == st.FAILED
    data = job.to_dict()
    assert data["failed_rank"] == 1, job.record.error
    assert "kf_bootstrap" in job.record.error  # the raw text is kept
    for text in (data["error"], str(failed.value)):
        assert "kf_bootstrap" not in text and "<frozen runpy>" not in text
        assert "Cell (the %%kf_train cell), line 5, in <module>" in text
        assert "Captured from the notebook" in text and "in helper" in text
        assert "ZeroDivisionError" in text
