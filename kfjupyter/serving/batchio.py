"""Batch inference's files: the inputs (Parquet, CSV, JSON lines) cut into shards of rows,
each shard's predictions, and the outputs written beside the inputs with the model version
recorded. Used by the API (planning), the workers and the supervisor (merging); pandas and
pyarrow only, so a worker starts light."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: input formats by suffix
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
#: the output's column(s) of predictions
PREDICTION = "prediction"
#: the key of the model version in a Parquet output's schema metadata (and the sidecar's)
VERSION_KEY = "kfjupyter.model_version"


def format_of(path: Path) -> str | None:
    return FORMATS.get(Path(path).suffix.lower())


def count_rows(path: Path) -> int:
    fmt = format_of(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with open(path, "rb") as fh:
        lines = 0
        last = b"\n"
        while chunk := fh.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    lines += last != b"\n"  # a last line without its newline
    return lines - 1 if fmt == "csv" else lines  # a CSV's header is no row


#: the Parquet table a worker read last (its next shard is most likely of the same file)
_last_table: dict = {}
#: input files read whole before the workers fork (:func:`preload`): (path, columns) → DataFrame
_preloaded: dict = {}
#: how much of the input :func:`preload` reads into memory at most (its in-memory size, estimated)
PRELOAD_BYTES = 1 << 30


def _estimated_bytes(path: Path) -> int:
    """About what the rows of ``path`` take in memory (Parquet: its uncompressed size; a
    text file: its size, which its numbers take at most once parsed)."""
    if format_of(path) == "parquet":
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(path).metadata
        return sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return Path(path).stat().st_size


def preload(files: list[Path], columns: list[str] | None = None, budget: int = PRELOAD_BYTES) -> list[Path]:
    """Read ``files`` (in order, while they fit in ``budget`` bytes) whole, once, for the
    :func:`read_rows` of this process and of the workers it forks, which share the rows
    (a fork's copy of memory is shared until written): one decoding of the input instead
    of one per worker. The files read."""
    read: list[Path] = []
    for path in files:
        size = _estimated_bytes(path)
        if size > budget:
            break
        budget -= size
        key = (str(path), tuple(columns or ()))
        if key not in _preloaded:
            _preloaded[key] = _read_whole(Path(path), columns)
        read.append(Path(path))
    return read


def _read_whole(path: Path, columns: list[str] | None):
    import pandas as pd

    fmt = format_of(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        # a block per column (no copy into one 2-D block), the table's memory freed as it goes
        return pq.read_table(path, columns=columns, memory_map=True).to_pandas(split_blocks=True, self_destruct=True)
    frame = pd.read_csv(path) if fmt == "csv" else pd.read_json(path, lines=True)
    return frame[columns] if columns else frame


def read_rows(path: Path, start: int, stop: int, columns: list[str] | None = None, keep: bool = False):
    """Rows ``start``…``stop - 1`` of an input file, as a DataFrame (a view of the rows
    when :func:`preload` read the file). ``keep``: keep the decoded Parquet file for the
    next call (a worker's next shard of the same file)."""
    import pandas as pd

    whole = _preloaded.get((str(path), tuple(columns or ())))
    if whole is not None:
        return whole.iloc[start:stop]
    fmt = format_of(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        key = (str(path), tuple(columns or ()))
        table = _last_table.get(key)
        if table is None:
            table = pq.read_table(path, columns=columns, memory_map=True)
            _last_table.clear()
            if keep:
                _last_table[key] = table
        return table.slice(start, stop - start).to_pandas()
    if fmt == "csv":
        frame = pd.read_csv(path, skiprows=range(1, start + 1), nrows=stop - start)
    else:
        from io import StringIO
        from itertools import islice

        with open(path, encoding="utf-8") as fh:
            frame = pd.read_json(StringIO("".join(islice(fh, start, stop))), lines=True)
    return frame[columns] if columns else frame


def plan_shards(files: list[Path], shard_rows: int) -> list[dict]:
    """The shards of ``files``: ``{"index", "file", "start", "stop"}``, in order."""
    shards = []
    for file in files:
        rows = count_rows(file)
        for start in range(0, rows, shard_rows):
            shards.append({"index": len(shards), "file": str(file), "start": start, "stop": min(rows, start + shard_rows)})
    return shards


def shard_log(job_dir: Path, index: int) -> Path:
    return Path(job_dir) / "shards" / f"{index:06d}.log"


def worker_log(job_dir: Path, index: int) -> Path:
    return Path(job_dir) / "logs" / f"worker-{index}.log"


def progress_log(job_dir: Path) -> Path:
    return Path(job_dir) / "logs" / "batch.log"


def progress_metrics(job_dir: Path) -> Path:
    return Path(job_dir) / "metrics" / "batch.jsonl"


def shard_output(job_dir: Path, index: int) -> Path:
    return Path(job_dir) / "shards" / f"{index:06d}.npy"


def write_atomic(path: Path, write) -> None:
    """``write(tmp_path)``, then rename: a file that exists is whole (a cancel mid-write leaves none)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def output_path(source: Path, folder_output: Path | None = None) -> Path:
    """Where the predictions of input file ``source`` go: beside it (``data.parquet`` →
    ``data.predictions.parquet``), or in ``folder_output`` for a folder of inputs."""
    name = f"{source.stem}.predictions{source.suffix}"
    return (folder_output / name) if folder_output else source.with_name(name)


def merge(shard_path, spec: dict, job_id: str) -> None:
    """Write every output of a batch job whose shards all have predictions: each input's
    shards' predictions (``shard_path(index)``: the ``.npy`` file), concatenated in order,
    beside the input (:func:`write_output`) with the model version recorded. ``spec``:
    the job's ``version``, ``model``, ``method``, ``shards``, ``outputs`` (input → output
    path) and ``include_inputs``."""
    import numpy as np

    meta = {"model": spec["model"], "version": spec["version"]["ref"], "job": job_id, "method": spec["method"]}
    for source, target in spec["outputs"].items():
        parts = [np.load(shard_path(s["index"])) for s in spec["shards"] if s["file"] == source]
        write_output(Path(source), Path(target), np.concatenate(parts), {VERSION_KEY: meta["version"], **meta},
                     include_inputs=spec.get("include_inputs", False))  # fmt: skip


def write_output(source: Path, target: Path, predictions: Any, meta: dict, include_inputs: bool = False) -> None:
    """The predictions of the input's rows, in its order (one ``prediction`` column, or
    ``prediction_0``… for several; with ``include_inputs``, after the input's columns), in
    the input's format; the model version is recorded in a sidecar ``<output>.json`` and,
    for Parquet, in the file's schema metadata."""
    import numpy as np
    import pandas as pd

    frame = read_rows(source, 0, count_rows(source)) if include_inputs else pd.DataFrame(index=range(len(predictions)))
    pred = np.asarray(predictions)
    if pred.ndim == 1:
        frame[PREDICTION] = pred
    else:
        for i in range(pred.shape[1]):
            frame[f"{PREDICTION}_{i}"] = pred[:, i]
    fmt = format_of(source)
    target.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), VERSION_KEY.encode(): json.dumps(meta).encode()})
            pq.write_table(table, tmp)
        elif fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_json(tmp, orient="records", lines=True)

    write_atomic(target, write)
    sidecar = target.with_name(target.name + ".json")
    write_atomic(sidecar, lambda tmp: tmp.write_text(json.dumps({**meta, "rows": int(len(frame)), "input": str(source)}, indent=1)))
