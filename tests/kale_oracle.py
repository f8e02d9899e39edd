"""Kale as the oracle: the DAG Kale's own notebook processor (kubeflow-kale 2.3) reads from
a notebook, and the DAG kfjupyter's compiler reads from it, in one comparable form.

A DAG here is plain data::

    {"steps": {name: the step's own cells' code, stripped, joined by blank lines},
     "edges": {(upstream, step)},          # explicit (prev:) edges
     "parameters": {name: default},
     "step_parameters": {step: {names}},
     "inputs": {step: {names it receives}},
     "metrics": {metric: the step reporting it},
     "pods": {step: {"labels", "annotations", "secrets", "image", "cache"}}}
"""

from __future__ import annotations

import ast
import logging
import re
import warnings
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from kfjupyter.pipelines import from_notebook

_METRICS = re.compile(r"_kale_kfp_metrics = \{(?P<body>.*?)\n\}", re.S)


def code(source: str, *tags: str):
    cell = new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def markdown(text: str):
    return new_markdown_cell(text)


def write(folder: Path, name: str, cells: list, **kale_metadata: Any) -> Path:
    """A notebook of ``cells`` with Kale's metadata (a pipeline and experiment name at least)."""
    meta = {"pipeline_name": name.replace("_", "-"), "experiment_name": "conformance", **kale_metadata}
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "kubeflow_notebook": meta,
    })
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def kale_dag(path: Path) -> dict[str, Any]:
    """What Kale's NotebookProcessor makes of the notebook (it raises on what it refuses)."""
    logging.getLogger("kale").setLevel(logging.ERROR)
    from kale.processors.nbprocessor import NotebookProcessor

    declared = nbformat.read(path, as_version=4).metadata.get("kubeflow_notebook", {})
    processor = NotebookProcessor(str(path))
    pipeline = processor.run()
    steps, metrics, inputs, params, pods = {}, {}, {}, {}, {}
    edges: set[tuple[str, str]] = set()
    members: dict[str, list[str]] = {}  # unit → its steps (a sub-pipeline's, prefixed)

    def read(pipeline, processor, prefix: str) -> None:
        shared = processor._shared_block_count
        for step in pipeline.steps:
            if hasattr(step, "pipeline") and step.pipeline is not None and step is not pipeline:
                read(step.pipeline, step.pipeline.processor, f"{step.name}_")
                members[step.name] = [f"{step.name}_{s.name}" for s in step.pipeline.steps]
                continue
            name = prefix + step.name
            members.setdefault(step.name if not prefix else name, [name])
            own = []
            for block in step.source[shared:]:
                m = _METRICS.search(block)
                if m and "_kale_kfputils.generate_mlpipeline_metrics" in block:
                    for key, value in ast.literal_eval("{" + re.sub(r":\s*(\w+)", r": '\1'", m["body"]) + "}").items():
                        metrics[value] = name
                    continue
                own.append(block.strip())
            steps[name] = "\n\n".join(own)
            inputs[name] = set(step.ins)
            params[name] = set(step.parameters or {})
            config = step.config
            pods[name] = {
                "labels": {k: v for k, v in (config.labels or {}).items()},
                "annotations": dict(config.annotations or {}),
                "secrets": {env: {"name": s["secret_name"], "key": s["secret_key"]} for env, s in (config.secrets or {}).items()},
                # only an image the notebook names (Kale's default image is not kfjupyter's)
                "image": config.base_image or declared.get("base_image") or None,
                "cache": config.enable_caching is not False,
            }
        for a, b in pipeline.edges:
            if prefix:
                edges.add((prefix + a, prefix + b))
            else:
                unit_edges.add((a, b))

    unit_edges: set[tuple[str, str]] = set()
    read(pipeline, processor, "")
    for a, b in unit_edges:  # a sub-pipeline runs as a whole: every step of a before every step of b
        edges |= {(x, y) for x in members.get(a, [a]) for y in members.get(b, [b])}
    return {
        "steps": steps,
        "edges": edges,
        "parameters": {n: p.param_value for n, p in pipeline.pipeline_parameters.items()},
        "step_parameters": params,
        "inputs": inputs,
        "metrics": metrics,
        "pods": pods,
        "volumes": [{"name": v.name, "mount_point": v.mount_point, "type": v.type} for v in pipeline.config.volumes],
    }


def kfjupyter_dag(path: Path) -> dict[str, Any]:
    """The same of kfjupyter's compiler."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline = from_notebook(path)
    return {
        "steps": {n: s.source for n, s in pipeline.steps.items()},
        "edges": {(e.source, e.target) for e in pipeline.edges if e.explicit},
        "parameters": {n: p.default for n, p in pipeline.parameters.items()},
        "step_parameters": {n: set(s.parameters) for n, s in pipeline.steps.items()},
        "inputs": {n: set(s.inputs) for n, s in pipeline.steps.items()},
        "metrics": {m: n for n, s in pipeline.steps.items() for m in s.metrics},
        "pods": {n: {"labels": s.labels, "annotations": s.annotations, "secrets": s.secrets,
                     "image": s.image, "cache": s.cache} for n, s in pipeline.steps.items()},
        "volumes": [{k: v[k] for k in ("name", "mount_point", "type")} for v in pipeline.volumes],
        "data_edges": {(e.source, e.target) for e in pipeline.edges},
    }


def ancestors(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The transitive closure of ``edges``: (a, b) when a runs before b."""
    closure = set(edges)
    while True:
        more = {(a, d) for a, b in closure for c, d in closure if b == c} - closure
        if not more:
            return closure
        closure |= more
