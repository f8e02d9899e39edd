"""papermill, loaded as a run's supervisor uses it.

Two of the optional modules papermill's dependencies would load are left out: nothing a
run does uses them, and they cost every run's start-up.

* ``rfc3987_syntax``: jsonschema (via nbformat) imports it for its optional "iri" format
  check when it is installed, and it builds a grammar as it loads (~2 s). Without it
  jsonschema leaves that one format unchecked, which notebooks never use.
* ``pyarrow``: papermill imports it for ``hdfs://`` paths (a run reads and writes files in
  its job folder). It loads numpy (~0.15 s), whose BLAS starts threads, and a warm parent
  (:mod:`kfjupyter.runtime.warm`) forks only while it has one. It is left out only while
  papermill loads: anything may import it later.
"""

from __future__ import annotations

import sys

sys.modules.setdefault("rfc3987_syntax", None)
_LEFT_OUT = "pyarrow" not in sys.modules
if _LEFT_OUT:
    sys.modules["pyarrow"] = None  # an ImportError for papermill, which then goes without
try:
    import papermill
    from papermill.exceptions import PapermillExecutionError
finally:
    if _LEFT_OUT and "pyarrow" in sys.modules and sys.modules["pyarrow"] is None:
        del sys.modules["pyarrow"]

execute_notebook = papermill.execute_notebook

__all__ = ["PapermillExecutionError", "execute_notebook", "papermill"]
