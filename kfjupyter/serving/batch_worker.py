"""One batch inference worker: ``python -m kfjupyter.serving.batch_worker JOB_DIR INDEX``.

Loads the model version of ``JOB_DIR/batch.json`` once, then takes the shards in turn: a
shard with predictions already is done; one claimed by another worker (an exclusive
``.claim`` file) is theirs; else it claims it, predicts its rows and writes the
predictions atomically (``shards/NNNNNN.npy``), with a line in the shard's log.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    args = argv or sys.argv[1:]
    job_dir, me = Path(args[0]), int(args[1])
    plan = json.loads((job_dir / "batch.json").read_text())
    import numpy as np

    from ..registry import formats
    from . import batchio
    from .calls import model_call

    version = plan["version"]
    model = formats.load(Path(version["folder"]), version.get("main_file"), version["format"], version.get("properties") or {})
    predict, _ = model_call(model, version["format"], plan.get("method") or "predict")
    named = getattr(model, "feature_names_in_", None) is not None  # fitted on a DataFrame: give it one
    print(f"worker {me}: {version['ref']} loaded", flush=True)
    for shard in plan["shards"]:
        i = shard["index"]
        out = batchio.shard_output(job_dir, i)
        if out.exists():
            continue
        try:
            os.close(os.open(out.with_suffix(".claim"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            continue  # another worker's
        t0 = time.perf_counter()
        try:
            frame = batchio.read_rows(Path(shard["file"]), shard["start"], shard["stop"], plan.get("columns"), keep=True)
            pred = np.asarray(predict(frame if named else frame.to_numpy()))
            if len(pred) != len(frame):
                raise ValueError(f"the model returned {len(pred)} predictions for {len(frame)} rows")

            def write(tmp: Path) -> None:
                with open(tmp, "wb") as fh:
                    np.save(fh, pred)

            batchio.write_atomic(out, write)
        except Exception:
            text = traceback.format_exc()
            with open(batchio.shard_log(job_dir, i), "a") as fh:
                fh.write(f"shard {i} failed on worker {me}:\n{text}")
            print(f"shard {i} (rows {shard['start']}–{shard['stop']} of {Path(shard['file']).name}) failed:\n{text}",
                  file=sys.stderr, flush=True)  # fmt: skip
            sys.exit(1)
        took = time.perf_counter() - t0
        line = f"shard {i}: rows {shard['start']}–{shard['stop']} of {Path(shard['file']).name} predicted in {took:.2f} s by worker {me}"
        with open(batchio.shard_log(job_dir, i), "a") as fh:
            fh.write(line + "\n")
        print(line, flush=True)


if __name__ == "__main__":
    main()
