"""Entry point of one rank: load a bundle and run its program.

This file uses the standard library only, so the Kubernetes backend can ship it in a
ConfigMap and run it in any image that has Python (and torch for training). When the
``kfjupyter`` package is not installed in the image, a small stand-in module provides
``kfjupyter.report`` and ``kfjupyter.output_dir`` with the same behaviour.

Environment it reads:
    KFJUPYTER_BUNDLE        directory holding program.py (default: this file's folder)
    KFJUPYTER_OUTPUT_DIR    where the program saves its outputs
    KFJUPYTER_METRICS_FILE  JSON-lines file that ``report`` appends to (optional)
    KFJUPYTER_ERROR_FILE    where the traceback of a failure is written (optional)
    KFJUPYTER_PRINT_METRICS "1": ``report`` also prints ``name=value`` lines (Katib's format)
"""

import json
import os
import pickle
import runpy
import sys
import time
import traceback
import types
from pathlib import Path


#: Functions called with every reported record (e.g. a tuning trial's pruning check).
#: A hook may raise to stop the program (Optuna's TrialPruned, say).
report_hooks = []


def report(step=None, **metrics):
    """Record metrics of the running rank (same contract as ``kfjupyter.report``)."""
    record = {"time": time.time(), "step": step}
    for key, value in metrics.items():
        record[key] = float(value)
    path = os.environ.get("KFJUPYTER_METRICS_FILE")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
    if os.environ.get("KFJUPYTER_PRINT_METRICS") == "1":
        pairs = ([f"step={step}"] if step is not None else []) + [
            f"{k}={float(v)!r}" for k, v in metrics.items()
        ]
        print(" ".join(pairs), flush=True)
    for hook in list(report_hooks):
        hook(record)
    return record


def output_dir():
    path = Path(os.environ.get("KFJUPYTER_OUTPUT_DIR", "outputs"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _install_standin():
    module = types.ModuleType("kfjupyter")
    module.report = report
    module.output_dir = output_dir
    module.__doc__ = "kfjupyter stand-in for images without the kfjupyter package"
    sys.modules["kfjupyter"] = module


def main():
    bundle = Path(os.environ.get("KFJUPYTER_BUNDLE") or Path(__file__).resolve().parent)
    modules = bundle / "modules"
    if modules.is_dir():
        sys.path.insert(0, str(modules))
    try:
        import kfjupyter  # noqa: F401  (the real package, when the image has it)
    except ImportError:
        _install_standin()
    try:
        values = {}
        if (bundle / "values.pkl").exists():
            with open(bundle / "values.pkl", "rb") as fh:
                # one pickle per variable, so the capture side could name a culprit
                values = {name: pickle.loads(blob) for name, blob in pickle.load(fh).items()}
        runpy.run_path(str(bundle / "program.py"), init_globals=values, run_name="__main__")
    except SystemExit:
        raise
    except BaseException:
        text = traceback.format_exc()
        sys.stderr.write(text)
        sys.stderr.flush()
        error_file = os.environ.get("KFJUPYTER_ERROR_FILE")
        if error_file:
            Path(error_file).write_text(text, encoding="utf-8")
        sys.exit(1)


if __name__ == "__main__":
    main()
