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
* **names**: parameters and values keep their names (``LR`` stays ``LR``: each component is
  a ``kfp.dsl.container_component``); a name the kfp SDK refuses (it must begin with an
  ASCII letter: ``_tmp``, ``données``) is refused with the rule. Tasks are named after the
  steps (``load_data`` becomes task ``load-data`` with display name ``load_data``).
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
  ``name=value`` lines in the step's log (``KFJUPYTER_PRINT_METRICS=1``); a step with
  metrics has an ``Output[Metrics]`` (``system.Metrics``) named ``kfjupyter_metrics``, as
  Kale's steps do: the loader logs each metric the way ``Metrics.log_metric`` does (in the
  artifact's metadata, written to the executor output KFP reads: the UI shows them as the
  run's metrics), and the artifact's file holds them as JSON lines (the local format).
* **pods** (``kfp-kubernetes``): ``label:K:V`` → ``add_pod_label``, ``annotation:K:V`` →
  ``add_pod_annotation``, ``secret:NAME:KEY:ENV`` → ``use_secret_as_env``; Kale's
  ``volumes``: a ``pvc`` is mounted on every step (``mount_pvc``), a ``new_pvc`` is created
  once (``CreatePVC``, named ``<run>-<name>``) then mounted, as Kale does; with
  ``expose_as_env_var`` the steps get ``KALE_VOLUME_<NAME>`` = the mount point.
* **local files**: the modules of the notebook's folder a step imports travel inside its
  component (a zip, base64, in one argument: at most :data:`MAX_ARG_BYTES`); the loader
  puts them on ``sys.path``. Data files of that folder a step names, and modules too big
  to travel, are named in a :class:`KFPCompileWarning`: they are not in the container.
* the pipeline's description is Kale's ``pipeline_description`` (else one of ours).
* explicit ``prev:`` edges without data become ``.after()`` dependencies.
"""

from __future__ import annotations

import base64
import inspect
import json
import os
import re
import warnings
import zlib
from pathlib import Path
from typing import Any

from ..errors import InvalidOptionError, KFJupyterError
from .model import Pipeline, Step

#: Image of a step that names none (and whose notebook names no default).
DEFAULT_IMAGE = "python:3.11-slim"

#: Pipeline parameter type → the Python annotation of its component / pipeline input.
_PARAM_TYPES: dict[str, type] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "json": str,  # JSON text: exact round trip (a LIST/STRUCT would turn 1 into 1.0)
}

#: Name of the ``system.Metrics`` output of a step with pipeline metrics.
METRICS_ARTIFACT = "kfjupyter_metrics"

#: Linux refuses one argv element longer than this (MAX_ARG_STRLEN, 32 pages).
MAX_ARG_BYTES = 131072 - 1024

#: Runs inside the step's container (``python3 -c LOADER RUNTIME BOOTSTRAP PROGRAM [LOADER
#: OPTIONS] ARGS…``): writes the three sources to a temporary folder, then runs the step
#: runtime on ARGS. The runtime and the bootstrap, the same in every step, travel
#: zlib-compressed and base64-encoded (a third of their size: the IR stays small); the
#: program as it is, for the reader of the YAML. The loader's own options come first:
#: ``--metrics-file PATH`` (where ``report`` writes), ``--modules ZIP`` (the local modules,
#: base64: put on ``sys.path``), ``--kfp-metrics ARTIFACT NAMES EXECUTOR_INPUT`` (after a
#: successful step, the last value of each metric of NAMES (comma-separated) logged in the
#: metadata of output ARTIFACT, in the executor output file KFP's launcher reads; NaN and
#: infinities are left out: KFP refuses them), ``--tracker SENDER`` (the MLflow sender of a
#: tracked run, packed as the runtime: written beside the bootstrap, which starts it).
LOADER = """\
import base64, io, json, os, runpy, sys, tempfile, zipfile, zlib
d = tempfile.mkdtemp(prefix="kfjupyter-step-")
texts = [zlib.decompress(base64.b64decode(a)).decode("utf-8") for a in sys.argv[1:3]] + [sys.argv[3]]
for name, text in zip(("stepruntime.py", "bootstrap.py", "program.py"), texts):
    with open(os.path.join(d, name), "w", encoding="utf-8") as fh:
        fh.write(text)
args = sys.argv[4:]
opts = {}
arity = {"--metrics-file": 1, "--modules": 1, "--kfp-metrics": 3, "--tracker": 1}
while args and args[0] in arity:
    n = arity[args[0]]
    opts[args[0]] = args[1:1 + n]
    del args[:1 + n]
if "--tracker" in opts:
    with open(os.path.join(d, "kf_mlflow.py"), "w", encoding="utf-8") as fh:
        fh.write(zlib.decompress(base64.b64decode(opts["--tracker"][0])).decode("utf-8"))
if "--metrics-file" in opts:
    path = opts["--metrics-file"][0]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    open(path, "a").close()
    os.environ["KFJUPYTER_METRICS_FILE"] = path
if "--modules" in opts:
    modules = os.path.join(d, "modules")
    zipfile.ZipFile(io.BytesIO(base64.b64decode(opts["--modules"][0]))).extractall(modules)
    sys.path.insert(0, modules)
sys.path.insert(0, d)
sys.argv = [os.path.join(d, "stepruntime.py"), "--program", os.path.join(d, "program.py")] + args
code = 0
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    code = exc.code
if code in (None, 0) and "--kfp-metrics" in opts:
    artifact, names, executor_input = opts["--kfp-metrics"]
    names, metrics = names.split(","), {}
    with open(opts["--metrics-file"][0], encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            metrics.update({k: v for k, v in record.items() if k in names and isinstance(v, (int, float))
                            and abs(v) != float("inf") and v == v})  # KFP takes finite numbers only
    out = json.loads(executor_input)["outputs"]["outputFile"]
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"artifacts": {artifact: {"artifacts": [{"metadata": metrics}]}}}, fh)
sys.exit(code)
"""


class KFPCompileWarning(UserWarning):
    """Something a step uses that the compiled pipeline does not carry (a data file of the
    notebook's folder, a module too big to travel): the step may fail on Kubeflow Pipelines."""


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


#: A name the kfp SDK accepts for a parameter or an artifact (``kfp.dsl.pipeline_channel``:
#: an ASCII letter, then letters, digits, '_'; what a Python identifier can be of its rule).
_KFP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: Names a component cannot take (its ``__call__`` has a ``self``).
_KFP_RESERVED = frozenset({"self"})


def checked_name(what: str, name: str) -> str:
    """``name`` as it is, if the kfp SDK accepts it (else a :class:`KFPCompileError` saying why)."""
    if not _KFP_NAME.fullmatch(name) or name in _KFP_RESERVED:
        raise KFPCompileError(
            f"{what} {name!r}: Kubeflow Pipelines refuses this name (it must begin with an ASCII "
            "letter and hold only letters, digits and '_', and not be 'self'): rename it"
        )
    return name


def _input_name(step: Step, name: str) -> str:
    """The component input of value ``name`` (``NAME__in`` when the step also outputs it)."""
    return f"{name}__in" if name in step.outputs else name


def module_bundle(step: Step, workdir: str | os.PathLike) -> tuple[str, list[str]]:
    """The local modules ``step`` imports (:func:`cache.local_module_files`), as the
    ``--modules`` argument of the loader (a zip, base64; "" when none), and a line for each
    module too big to travel in it (one argument holds at most :data:`MAX_ARG_BYTES`)."""
    import io
    import zipfile

    from .cache import local_module_files

    def b64zip(files: list[Path]) -> str:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
            for path in files:
                bundle.write(path, path.relative_to(root).as_posix())
        return base64.b64encode(buffer.getvalue()).decode("ascii")

    root, bundle, shipped, too_big = Path(workdir), "", [], []
    for module, files in local_module_files(step.program, root).items():
        trial = b64zip(shipped + files)
        if len(trial) > MAX_ARG_BYTES:
            too_big.append(f"local module {module} ({len(b64zip(files)) // 1024} KiB) is too big to travel inside "
                           f"the component (at most {MAX_ARG_BYTES // 1024} KiB a step): install it in the image")
        else:
            bundle, shipped = trial, shipped + files
    return bundle, too_big


def step_component(pipeline: Pipeline, step: Step, default_image: str | None = None, notes: list[str] | None = None,
                   tracking=None):  # fmt: skip
    """The KFP component of one step: a ``kfp.dsl.container_component`` whose inputs and
    outputs are the step's parameters and values under their own names. What the step uses
    and the component does not carry is added to ``notes`` (one line each). With
    ``tracking`` (a :class:`kfjupyter.tracking.pods.PodTracking`) it carries the MLflow
    sender, which the step's bootstrap starts."""
    _, _, dsl = _kfp()
    from kfp.dsl import Artifact, Input, Metrics, Output

    runtime_src, bootstrap_src = _runtime_sources()
    for what, text in (("program", step.program), ("step runtime", runtime_src), ("bootstrap", bootstrap_src)):
        if len(text.encode("utf-8")) > MAX_ARG_BYTES:
            raise KFPCompileError(
                f"step {step.name}: its {what} is {len(text.encode())} bytes, over the "
                f"{MAX_ARG_BYTES} bytes one command-line argument can carry; move code to a module in the image"
            )
    interface: dict[str, Any] = {}  # component input/output name → its annotation
    for name in step.parameters:
        param = pipeline.parameters.get(name)
        if param is None:
            raise KFPCompileError(f"step {step.name} reads parameter {name!r}, which the pipeline does not declare")
        interface[checked_name("parameter", name)] = _PARAM_TYPES[param.type]
    for name in step.inputs:
        interface[_input_name(step, checked_name(f"step {step.name}: value", name))] = Input[Artifact]
    for name in step.outputs:
        interface[checked_name(f"step {step.name}: value", name)] = Output[Artifact]
    if step.metrics:
        interface[METRICS_ARTIFACT] = Output[Metrics]
    names = [*step.parameters, *map(lambda n: _input_name(step, n), step.inputs), *step.outputs,
             *([METRICS_ARTIFACT] if step.metrics else [])]  # fmt: skip
    if len(names) != len(interface):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise KFPCompileError(f"step {step.name}: {', '.join(twice)} would be two inputs/outputs of one component: rename one")
    loader_options: list[Any] = []
    for text in (tracking.files if tracking is not None else {}).values():
        loader_options += ["--tracker", packed(text.decode("utf-8"))]
    if pipeline.notebook:  # the notebook's folder: its modules travel, its data files cannot
        from .cache import data_files

        workdir = Path(pipeline.notebook).parent
        bundle, missing = module_bundle(step, workdir)
        if bundle:
            loader_options += ["--modules", bundle]
        files = data_files(step.program, workdir)
        if files:
            missing.append(
                f"{', '.join(files)} (a file of the notebook's folder) will not be in the step's container on "
                "Kubeflow Pipelines: put it in the image or on a volume (Kale's volumes), or read it from storage"
            )
        if notes is not None:
            notes += [f"step {step.name}: {text}" for text in missing]
    if notes is not None and re.search(r"\bget_ipython\(\)", step.program):
        notes.append(f"step {step.name}: it runs IPython magics or !shell lines, so its image "
                     f"({step_image(step, default_image)}) needs ipython installed, as Kale's images have")

    def container(*placeholders):
        given = dict(zip(interface, placeholders))
        options = list(loader_options)
        if step.metrics:
            options += ["--metrics-file", given[METRICS_ARTIFACT].path, "--kfp-metrics", METRICS_ARTIFACT,
                        ",".join(step.metrics), dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER]  # fmt: skip
        args: list[Any] = [*options, "--step", step.name]
        for name in step.parameters:
            args += ["--param", name, pipeline.parameters[name].type, given[name]]
        for name in step.inputs:
            args += ["--input", name, given[_input_name(step, name)].path]
        for name in step.outputs:
            args += ["--output", name, given[name].path]
        for name in step.metrics:
            args += ["--metric", name]
        return dsl.ContainerSpec(
            image=step_image(step, default_image),
            command=["python3", "-c", LOADER, packed(runtime_src), packed(bootstrap_src), step.program],
            args=args,
        )

    container.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=a) for n, a in interface.items()]
    )
    container.__name__ = step.name
    container.__doc__ = f"kfjupyter step {step.name} (notebook cells {', '.join(str(c + 1) for c in step.cells)})"
    return dsl.container_component(container)


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


def _kubernetes():
    try:
        from kfp import kubernetes
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise KFPCompileError(
            "labels, annotations, secrets and volumes on Kubeflow Pipelines need kfp-kubernetes: "
            "pip install 'kfjupyter[pipelines]'"
        ) from exc
    return kubernetes


#: Kale's short volume access modes (``volume_access_mode``) → Kubernetes'; Kale's default is rwm.
_ACCESS_MODES = {"rom": "ReadOnlyMany", "rwo": "ReadWriteOnce", "rwm": "ReadWriteMany"}


def _volume_mounts(pipeline: Pipeline) -> list[tuple[dict[str, Any], Any]]:
    """Kale's ``volumes`` as (volume, PVC name: a name, or a ``CreatePVC`` task's output),
    creating the ``new_pvc`` ones (call inside the pipeline's body)."""
    if not pipeline.volumes:
        return []
    kubernetes = _kubernetes()
    mounts = []
    for vol in pipeline.volumes:
        name, kind = vol.get("name"), vol.get("type")
        if not name or not vol.get("mount_point"):
            raise KFPCompileError(f"volume {vol!r}: a volume needs a name and a mount_point")
        if kind == "pvc":
            mounts.append((vol, name))
        elif kind == "new_pvc":
            if not vol.get("size"):
                raise KFPCompileError(f"volume {name!r}: a new_pvc volume needs a size (and a size_type, e.g. Gi)")
            modes = vol.get("volume_access_mode") or "rwm"
            modes = [_ACCESS_MODES.get(m, m) for m in ([modes] if isinstance(modes, str) else modes)]
            notes = vol.get("annotations") or {}
            if isinstance(notes, list):  # Kale's [{"key": k, "value": v}], empty pairs dropped
                notes = {a["key"]: a["value"] for a in notes if a.get("key") and a.get("value")}
            create = kubernetes.CreatePVC(
                pvc_name_suffix=f"-{name}", access_modes=modes, size=f"{vol['size']}{vol.get('size_type') or ''}",
                storage_class_name=vol.get("storage_class_name") or None, annotations=notes or None,
            )  # fmt: skip
            create.set_display_name(f"create volume {name}")
            mounts.append((vol, create.outputs["name"]))
        else:
            raise KFPCompileError(
                f"volume {name!r}: type {kind!r} cannot be mounted on Kubeflow Pipelines (use pvc, an existing "
                "PersistentVolumeClaim, or new_pvc)"
            )
    return mounts


def _apply_tracking(task, step: Step, tracking) -> None:
    """What the step's pod needs to send its nested run to MLflow: the variables, and the
    token as a reference to its Secret."""
    for entry in tracking.env_vars(run_name=step.name, child_run=f"{tracking.job_id}.{step.name}"):
        if "value" in entry:
            task.set_env_variable(entry["name"], entry["value"])
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            _kubernetes().use_secret_as_env(task, secret_name=ref["name"], secret_key_to_env={ref["key"]: entry["name"]})


def _apply_pod(task, step: Step, mounts: list[tuple[dict[str, Any], Any]],
               security: dict[str, Any] | None = None) -> None:
    """The step's labels, annotations and secrets, and the pipeline's volumes and Kale's
    security context, on its pod."""
    if not (step.labels or step.annotations or step.secrets or mounts or security):
        return
    kubernetes = _kubernetes()
    if security:
        kubernetes.set_security_context(task, **security)
    for key, value in step.labels.items():
        kubernetes.add_pod_label(task, key, str(value))
    for key, value in step.annotations.items():
        kubernetes.add_pod_annotation(task, key, str(value))
    for env, secret in step.secrets.items():
        kubernetes.use_secret_as_env(task, secret_name=secret["name"], secret_key_to_env={secret["key"]: env})
    for vol, pvc in mounts:
        kubernetes.mount_pvc(task, pvc_name=pvc, mount_path=vol["mount_point"])
        if vol.get("expose_as_env_var"):  # Kale's KALE_VOLUME_<NAME>
            task.set_env_variable("KALE_VOLUME_" + re.sub(r"[^A-Z0-9]", "_", vol["name"].upper()), vol["mount_point"])


def build_pipeline_func(pipeline: Pipeline, default_image: str | None = None, notes: list[str] | None = None,
                        tracking=None):  # fmt: skip
    """The ``@dsl.pipeline`` graph component of ``pipeline`` (what the compiler compiles);
    what its steps use and it does not carry is added to ``notes``. With ``tracking`` (a
    :class:`kfjupyter.tracking.pods.PodTracking`), each step sends its run to MLflow."""
    _, _, dsl = _kfp()
    tracking = tracking if tracking is not None and tracking.enabled else None
    factories = {name: step_component(pipeline, step, default_image, notes, tracking)
                 for name, step in pipeline.steps.items()}  # fmt: skip
    param_names = [checked_name("parameter", name) for name in pipeline.parameters]

    def body(*values):
        given = dict(zip(param_names, values))
        mounts = _volume_mounts(pipeline)
        tasks: dict[str, Any] = {}
        for name, step in pipeline.steps.items():
            kwargs: dict[str, Any] = {p: given[p] for p in step.parameters}
            for var, supplier in step.inputs.items():
                if supplier not in tasks:
                    raise KFPCompileError(f"step {name} reads {var} from {supplier}, which does not run before it")
                kwargs[_input_name(step, var)] = tasks[supplier].outputs[var]
            task = factories[name](**kwargs)
            task.set_display_name(name)
            task.set_caching_options(bool(step.cache))
            task.set_env_variable("PYTHONUNBUFFERED", "1")
            task.set_env_variable("KFJUPYTER_PRINT_METRICS", "1")
            _apply_limits(task, step)
            _apply_pod(task, step, mounts, pipeline.security_context)
            if tracking is not None:
                _apply_tracking(task, step, tracking)
            data_sources = set(step.inputs.values())
            for upstream in pipeline.upstream(name):
                if upstream not in data_sources:
                    task.after(tasks[upstream])
            tasks[name] = task

    signature = []
    for name, param in pipeline.parameters.items():
        default = json.dumps(param.default) if param.type == "json" else param.default
        annotation = _PARAM_TYPES[param.type]
        signature.append(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation))
    body.__signature__ = inspect.Signature(signature)  # type: ignore[attr-defined]
    body.__name__ = re.sub(r"\W", "_", pipeline.name) or "pipeline"
    description = pipeline.description or (
        f"kfjupyter pipeline {pipeline.name}" + (f" from {pipeline.notebook}" if pipeline.notebook else "")
    )
    return dsl.pipeline(name=kfp_name(pipeline.name), description=description)(body)


def compile_kfp(pipeline: Pipeline | str | os.PathLike, path: str | os.PathLike | None = None, *,
                default_image: str | None = None, tracking=None) -> str:  # fmt: skip
    """Compile ``pipeline`` (a Pipeline, or a tagged notebook's path) to KFP v2 IR YAML.

    Returns the YAML text; with ``path``, also writes it there. The text loads back with the
    kfp SDK (``kfp.components.load_component_from_text``) and runs on Kubeflow Pipelines 2.x.
    ``tracking`` (a :class:`kfjupyter.tracking.pods.PodTracking`): the steps of that run send
    their runs to MLflow (the IR is then this run's own).
    """
    if not isinstance(pipeline, Pipeline):
        from .graph import from_notebook

        pipeline = from_notebook(pipeline)
    compiler, _, _ = _kfp()
    import tempfile

    notes: list[str] = []
    func = build_pipeline_func(pipeline, default_image, notes, tracking)
    for note in notes:
        warnings.warn(note, KFPCompileWarning, stacklevel=2)
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
    by its name (the IR's pipeline inputs keep the parameters' names)."""
    unknown = sorted(set(values or {}) - set(pipeline.parameters))
    if unknown:
        raise KFPCompileError(
            f"unknown pipeline parameter(s) {', '.join(unknown)} (declared: {', '.join(pipeline.parameters) or 'none'})"
        )
    out: dict[str, Any] = {}
    for name, value in pipeline.parameter_values(values).items():
        kind = pipeline.parameters[name].type
        key = name  # the pipeline input's name in the IR
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
