"""Execute a notebook end to end in a real kernel and say where its results are.

    python scripts/run_notebook.py notebooks/quickstart.ipynb

The executed copy is written into the kfjupyter workspace (KFJUPYTER_HOME, else
Jupyter's data directory); the printed output of every cell is echoed here.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from kfjupyter.config import workspace_home


def main(path: str) -> int:
    source = Path(path).resolve()
    nb = nbformat.read(source, as_version=4)
    out_dir = workspace_home() / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{source.stem}.{time.strftime('%Y%m%d-%H%M%S')}.ipynb"
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(source.parent)}})
    started = time.monotonic()
    try:
        client.execute()
        ok = True
    except CellExecutionError as exc:
        print(exc, file=sys.stderr)
        ok = False
    nbformat.write(nb, target)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                sys.stdout.write(output["text"])
    print(f"\n{'executed' if ok else 'FAILED'} {source.name} in {time.monotonic() - started:.1f} s")
    print(f"executed notebook: {target}")
    print(f"workspace (jobs, logs, outputs): {workspace_home()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
