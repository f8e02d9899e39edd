"""Compile a :class:`~kfjupyter.pipelines.model.Pipeline` to Kubeflow Pipelines v2 IR YAML.

The IR is produced by the ``kfp`` SDK itself (``kfp.compiler.Compiler``), so it is what
``kfp`` 2.x would write for the same pipeline; ``kfp`` is needed at compile time only
(the ``pipelines`` extra), never inside the steps.

One component per step:

* **image**: the step's ``image:`` tag, else ``default_image`` (the notebook's Kale
  ``docker_image`` when the compiler put it on the steps), else ``$KFJUPYTER_PIPELINE_IMAGE``,
  else :data:`DEFAULT_IMAGE` (``python:3.11-slim``). The image must hold Python 3.8+ and the
  libraries the step imports (numpy, scikit-learn, …): that is the image's business. It needs
  neither Jupyter nor the kfjupyter package.
* **the lean step runtime**: the container runs ``python3 -c LOADER`` with three source texts
  as arguments — :mod:`kfjupyter.pipelines.stepruntime` (stdlib only),
  :mod:`kfjupyter.runtime.bootstrap` (the stand-in ``kfjupyter.report``), both compressed,
  and the step's generated program as it is. The loader writes them to a temporary folder
  and runs the step runtime.
  Program text travels as *data* (an argv element), never through a shell.
* **names**: KFP lower-cases input/output and parameter names (``C`` → ``c``, see
  :func:`io_name`); the step still sees its variables under their own names. Two names
  that KFP would merge are refused. Tasks are named after the steps (``load_data`` becomes
  task ``load-data`` with display name ``load_data``).
* **parameters**: every pipeline parameter is a typed pipeline input (``int``, ``float``,
  ``str``, ``bool``; ``json`` parameters are ``str`` inputs holding JSON text, so that
  integers inside lists stay integers) passed only to the steps that read it, as
  ``--param NAME TYPE {{$.inputs.parameters['NAME']}}``: KFP substitutes the value into its own
  argv element, so quotes or code in a value are just a string.
* **data**: every value crossing steps is an ``Artifact``: the producer writes
  ``--output NAME {{$.outputs.artifacts['NAME'].path}}`` (a value directory, see the step
  runtime), consumers read ``--input NAME {{$.inputs.artifacts['NAME'].path}}``. An input
  that the step also outputs is named ``NAME__in`` on the component.
* **resources**: ``limit:cpu`` → ``set_cpu_limit``, ``limit:memory`` → ``set_memory_limit``,
  ``limit:<vendor>/gpu`` (e.g. ``nvidia.com/gpu``) → ``set_accelerator_type`` +
  ``set_accelerator_limit``.
* **caching**: ``cache:false`` → ``set_caching_options(False)``.
* **metrics**: ``pipeline-metrics`` names become ``--metric NAME``; ``report`` prints
  ``name=value`` lines in the step's log (``KFJUPYTER_PRINT_METRICS=1``) and a step with
  metrics also writes them (JSON lines) to an output artifact ``kfjupyter_metrics``.
* explicit ``prev:`` edges without data become ``.after()`` dependencies.
"""

from __future__ import annotations

import base64
import inspect
import json
import os
import re
import zlib
from pathlib import Path
from typing import Any

from ..errors import InvalidOptionError, KFJupyterError
from .model import Pipeline, Step

#: Image of a step that names none (and whose notebook names no default).
DEFAULT_IMAGE = "python:3.11-slim"

#: Pipeline parameter type → (KFP v1 component type, Python annotation, stepruntime TYPE).
_PARAM_TYPES: dict[str, tuple[str, type]] = {
    "int": ("Integer", int),
    "float": ("Float", float),
    "str": ("String", str),
    "bool": ("Boolean", bool),
    "json": ("String", str),  # JSON text: exact round trip (a LIST/STRUCT would turn 1 into 1.0)
}

#: Name of the output artifact holding a step's reported metrics (JSON lines).
METRICS_ARTIFACT = "kfjupyter_metrics"

#: Linux refuses one argv element longer than this (MAX_ARG_STRLEN, 32 pages).
MAX_ARG_BYTES = 131072 - 1024

#: Runs inside the step's container (``python3 -c LOADER RUNTIME BOOTSTRAP PROGRAM ARGS…``):
#: writes the three sources to a temporary folder, then runs the step runtime on the rest.
#: The runtime and the bootstrap, the same in every step, travel zlib-compressed and
#: base64-encoded (a third of their size: the IR stays small); the program as it is, for
#: the reader of the YAML.
LOADER = """\
import base64, os, runpy, sys, tempfile, zlib
d = tempfile.mkdtemp(prefix="kfjupyter-step-")
texts = [zlib.decompress(base64.b64decode(a)).decode("utf-8") for a in sys.argv[1:3]] + [sys.argv[3]]
for name, text in zip(("stepruntime.py", "bootstrap.py", "program.py"), texts):
    with open(os.path.join(d, name), "w", encoding="utf-8") as fh:
        fh.write(text)
args = sys.argv[4:]
if "--metrics-file" in args:
    i = args.index("--metrics-file")
    path = args[i + 1]
    del args[i:i + 2]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    open(path, "a").close()
    os.environ["KFJUPYTER_METRICS_FILE"] = path
sys.path.insert(0, d)
sys.argv = [os.path.join(d, "stepruntime.py"), "--program", os.path.join(d, "program.py")] + args
runpy.run_path(sys.argv[0], run_name="__main__")
"""


class KFPCompileError(InvalidOptionError):
    """The pipeline cannot be expressed as a KFP pipeline (or ``kfp`` is missing): nothing is sent."""


def _kfp():
    try:
        import kfp  # noqa: F401
        from kfp import compiler, components, dsl
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise KFPCompileError(
            "compiling for Kubeflow Pipelines needs the kfp SDK: pip install 'kfjupyter[pipelines]'"
        ) from exc
    return compiler, components, dsl


def _runtime_sources() -> tuple[str, str]:
    """The step runtime's and the bootstrap's source text, shipped inside every component."""
    from ..runtime import bootstrap
    from . import stepruntime

    return Path(stepruntime.__file__).read_text(encoding="utf-8"), Path(bootstrap.__file__).read_text(encoding="utf-8")


def packed(text: str) -> str:
    """``text`` as the LOADER reads the runtime's sources: zlib, then base64."""
    return base64.b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii")


def kfp_name(name: str) -> str:
    """A name as KFP accepts it for a pipeline: lower-case letters, digits and '-'."""
    text = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return re.sub(r"-{2,}", "-", text)[:128] or "pipeline"


def step_image(step: Step, default_image: str | None = None) -> str:
    return step.image or default_image or os.environ.get("KFJUPYTER_PIPELINE_IMAGE") or DEFAULT_IMAGE


def io_name(name: str) -> str:
    """The name KFP gives a component input/output or pipeline parameter called ``name``
    (``kfp.dsl.utils.sanitize_input_name``: lower case, runs of other characters → '_')."""
    return re.sub(r"[^_0-9a-z]+", "_", name.lower()).strip("_")


def _input_name(step: Step, name: str) -> str:
    return io_name(f"{name}__in" if name in step.outputs else name)


def _check_unique(what: str, names: list[str]) -> None:
    seen: dict[str, str] = {}
    for original in names:
        kfp = io_name(original)
        if kfp in seen and seen[kfp] != original:
            raise KFPCompileError(
                f"{what}: {seen[kfp]!r} and {original!r} both become {kfp!r} in Kubeflow Pipelines "
                "(KFP lower-cases names): rename one"
            )
        seen[kfp] = original


def component_spec(pipeline: Pipeline, step: Step, default_image: str | None = None) -> dict:
    """The KFP component (v1 component YAML, as ``kfp.components`` loads it) of one step."""
    runtime_src, bootstrap_src = _runtime_sources()
    for what, text in (("program", step.program), ("step runtime", runtime_src), ("bootstrap", bootstrap_src)):
        if len(text.encode("utf-8")) > MAX_ARG_BYTES:
            raise KFPCompileError(
                f"step {step.name}: its {what} is {len(text.encode())} bytes, over the "
                f"{MAX_ARG_BYTES} bytes one command-line argument can carry; move code to a module in the image"
            )
    inputs: list[dict] = []
    outputs: list[dict] = []
    args: list[Any] = ["--step", step.name]
    for name in step.parameters:
        param = pipeline.parameters.get(name)
        if param is None:
            raise KFPCompileError(f"step {step.name} reads parameter {name!r}, which the pipeline does not declare")
        kfp_type = _PARAM_TYPES[param.type][0]
        inputs.append({"name": io_name(name), "type": kfp_type})
        args += ["--param", name, param.type, {"inputValue": io_name(name)}]
    for name in step.inputs:
        comp_name = _input_name(step, name)
        inputs.append({"name": comp_name, "type": "Artifact"})
        args += ["--input", name, {"inputPath": comp_name}]
    for name in step.outputs:
        outputs.append({"name": io_name(name), "type": "Artifact"})
        args += ["--output", name, {"outputPath": io_name(name)}]
    for name in step.metrics:
        args += ["--metric", name]
    if step.metrics:
        outputs.append({"name": METRICS_ARTIFACT, "type": "Artifact"})
        args += ["--metrics-file", {"outputPath": METRICS_ARTIFACT}]
    _check_unique(f"step {step.name}", [*step.parameters, *(f"{n}__in" if n in step.outputs else n for n in step.inputs)])
    _check_unique(f"step {step.name}", [*step.outputs, *([METRICS_ARTIFACT] if step.metrics else [])])
    return {
        "name": step.name,
        "description": f"kfjupyter step {step.name} (notebook cells {', '.join(map(str, step.cells))})",
        "inputs": inputs,
        "outputs": outputs,
        "implementation": {
            "container": {
                "image": step_image(step, default_image),
                "command": ["python3", "-c", LOADER, packed(runtime_src), packed(bootstrap_src), step.program],
                "args": args,
            }
        },
    }


def _apply_limits(task, step: Step) -> None:
    accelerators = 0
    for key, value in step.limits.items():
        value = str(value)
        if key == "cpu":
            task.set_cpu_limit(value)
        elif key == "memory":
            task.set_memory_limit(value)
        elif "/" in key:  # nvidia.com/gpu, amd.com/gpu, …
            accelerators += 1
            if accelerators > 1:
                raise KFPCompileError(f"step {step.name}: KFP allows one accelerator type per step ({step.limits})")
            try:
                count = int(value)
            except ValueError:
                raise KFPCompileError(f"step {step.name}: limit:{key}:{value} is not a whole number") from None
            task.set_accelerator_type(key).set_accelerator_limit(count)
        else:
            raise KFPCompileError(
                f"step {step.name}: unknown limit {key!r} (use cpu, memory or an accelerator such as nvidia.com/gpu)"
            )


def build_pipeline_func(pipeline: Pipeline, default_image: str | None = None):
    """The ``@dsl.pipeline`` graph component of ``pipeline`` (what the compiler compiles)."""
    _, components, dsl = _kfp()
    import yaml

    specs = {name: component_spec(pipeline, step, default_image) for name, step in pipeline.steps.items()}
    factories = {name: components.load_component_from_text(yaml.safe_dump(spec)) for name, spec in specs.items()}
    param_names = list(pipeline.parameters)
    _check_unique(f"pipeline {pipeline.name} parameters", param_names)

    def body(*values):
        given = dict(zip(param_names, values))
        tasks: dict[str, Any] = {}
        for name, step in pipeline.steps.items():
            kwargs: dict[str, Any] = {io_name(p): given[p] for p in step.parameters}
            for var, supplier in step.inputs.items():
                if supplier not in tasks:
                    raise KFPCompileError(f"step {name} reads {var} from {supplier}, which does not run before it")
                kwargs[_input_name(step, var)] = tasks[supplier].outputs[io_name(var)]
            task = factories[name](**kwargs)
            task.set_display_name(name)
            task.set_caching_options(bool(step.cache))
            task.set_env_variable("PYTHONUNBUFFERED", "1")
            task.set_env_variable("KFJUPYTER_PRINT_METRICS", "1")
            _apply_limits(task, step)
            data_sources = set(step.inputs.values())
            for upstream in pipeline.upstream(name):
                if upstream not in data_sources:
                    task.after(tasks[upstream])
            tasks[name] = task

    signature = []
    for name, param in pipeline.parameters.items():
        default = json.dumps(param.default) if param.type == "json" else param.default
        annotation = _PARAM_TYPES[param.type][1]
        signature.append(
            inspect.Parameter(io_name(name), inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)
        )
    body.__signature__ = inspect.Signature(signature)  # type: ignore[attr-defined]
    body.__name__ = re.sub(r"\W", "_", pipeline.name) or "pipeline"
    description = f"kfjupyter pipeline {pipeline.name}" + (f" from {pipeline.notebook}" if pipeline.notebook else "")
    return dsl.pipeline(name=kfp_name(pipeline.name), description=description)(body)


def compile_kfp(pipeline: Pipeline | str | os.PathLike, path: str | os.PathLike | None = None, *,
                default_image: str | None = None) -> str:  # fmt: skip
    """Compile ``pipeline`` (a Pipeline, or a tagged notebook's path) to KFP v2 IR YAML.

    Returns the YAML text; with ``path``, also writes it there. The text loads back with the
    kfp SDK (``kfp.components.load_component_from_text``) and runs on Kubeflow Pipelines 2.x.
    """
    if not isinstance(pipeline, Pipeline):
        from .graph import from_notebook

        pipeline = from_notebook(pipeline)
    compiler, _, _ = _kfp()
    import tempfile

    func = build_pipeline_func(pipeline, default_image)
    with tempfile.TemporaryDirectory(prefix="kfjupyter-kfp-") as tmp:
        out = Path(tmp) / "pipeline.yaml"
        try:
            compiler.Compiler().compile(func, str(out))
        except KFJupyterError:
            raise
        except Exception as exc:  # the SDK's own checks
            raise KFPCompileError(f"kfp cannot compile pipeline {pipeline.name}: {exc}") from exc
        text = out.read_text(encoding="utf-8")
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def runtime_parameters(pipeline: Pipeline, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's ``runtime_config.parameters``: every parameter's value as the IR types it, keyed
    by the IR's input names (:func:`io_name`)."""
    unknown = sorted(set(values or {}) - set(pipeline.parameters))
    if unknown:
        raise KFPCompileError(
            f"unknown pipeline parameter(s) {', '.join(unknown)} (declared: {', '.join(pipeline.parameters) or 'none'})"
        )
    out: dict[str, Any] = {}
    for name, value in pipeline.parameter_values(values).items():
        kind = pipeline.parameters[name].type
        key = io_name(name)  # the pipeline input's name in the IR
        if kind == "json":
            out[key] = json.dumps(value)
        elif kind == "bool":
            if not isinstance(value, bool):
                raise KFPCompileError(f"parameter {name} is a bool, got {value!r}")
            out[key] = value
        elif kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise KFPCompileError(f"parameter {name} is an int, got {value!r}")
            out[key] = value
        elif kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise KFPCompileError(f"parameter {name} is a float, got {value!r}")
            out[key] = float(value)
        else:
            out[key] = value if isinstance(value, str) else str(value)
    return out
