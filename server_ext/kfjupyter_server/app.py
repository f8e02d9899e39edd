"""The extension application: configuration, routes, and the job watcher's lifetime."""

from __future__ import annotations

import os
from pathlib import Path

from jupyter_server.extension.application import ExtensionApp
from traitlets import Float, Instance, Int, TraitError, Unicode, default, validate
from traitlets.config import Configurable

from kfjupyter.errors import InvalidOptionError
from kfjupyter.backends import backend_names
from kfjupyter.tracking.pods import parse_token_secret
from kfjupyter.validation import check_dns1123_label

from . import endpoints, experiments, handlers, models, pipelines
from . import notebookruns
from .watcher import JOB_EVENT_SCHEMA_ID, JobWatcher

#: Every route, relative to the server's base URL. server_ext/openapi.yaml describes
#: each one (a test checks both ways).
API_PREFIX = "kfjupyter/api/v1"
JOB = r"(?P<job_id>[^/]+)"
STUDY = r"(?P<study_id>[^/]+)"
TRIAL = r"(?P<number>[^/]+)"
MODEL = r"(?P<model>[^/]+)"
ENDPOINT = r"(?P<endpoint>[^/]+)"
VERSION = r"(?P<version>[^/]+)"
ALIAS = r"(?P<alias>[^/]+)"
FILE = r"(?P<path>.+)"
RUN = r"(?P<run_id>[^/]+)"
STEP = r"(?P<step>[^/]+)"
TRACKED_RUN = r"(?P<run_id>[^/]+)"
ROUTES = [
    (rf"/{API_PREFIX}/jobs", handlers.JobsHandler),
    (rf"/{API_PREFIX}/jobs/{JOB}", handlers.JobHandler),
    (rf"/{API_PREFIX}/jobs/{JOB}/cancel", handlers.CancelHandler),
    (rf"/{API_PREFIX}/jobs/{JOB}/logs", handlers.LogsHandler),
    (rf"/{API_PREFIX}/jobs/{JOB}/logs/stream", handlers.LogStreamHandler),
    (rf"/{API_PREFIX}/jobs/{JOB}/metrics", handlers.MetricsHandler),
    (rf"/{API_PREFIX}/jobs/{JOB}/children", handlers.ChildrenHandler),
    (rf"/{API_PREFIX}/studies", handlers.StudiesHandler),
    (rf"/{API_PREFIX}/studies/{STUDY}", handlers.StudyHandler),
    (rf"/{API_PREFIX}/studies/{STUDY}/cancel", handlers.StudyCancelHandler),
    (rf"/{API_PREFIX}/studies/{STUDY}/importances", handlers.StudyImportancesHandler),
    (rf"/{API_PREFIX}/studies/{STUDY}/retrain-best", handlers.StudyRetrainHandler),
    (rf"/{API_PREFIX}/studies/{STUDY}/register-best", models.StudyRegisterBestHandler),
    (rf"/{API_PREFIX}/studies/{STUDY}/trials/{TRIAL}/log", handlers.TrialLogHandler),
    (rf"/{API_PREFIX}/models", models.ModelsHandler),
    (rf"/{API_PREFIX}/model-versions", models.VersionSearchHandler),
    (rf"/{API_PREFIX}/models/{MODEL}", models.ModelHandler),
    (rf"/{API_PREFIX}/models/{MODEL}/aliases", models.AliasesHandler),
    (rf"/{API_PREFIX}/models/{MODEL}/aliases/{ALIAS}", models.AliasHandler),
    (rf"/{API_PREFIX}/models/{MODEL}/versions", models.VersionsHandler),
    (rf"/{API_PREFIX}/models/{MODEL}/versions/{VERSION}", models.VersionHandler),
    (rf"/{API_PREFIX}/models/{MODEL}/versions/{VERSION}/archive", models.ArchiveHandler),
    (rf"/{API_PREFIX}/models/{MODEL}/versions/{VERSION}/restore", models.RestoreHandler),
    (rf"/{API_PREFIX}/models/{MODEL}/versions/{VERSION}/files", models.FilesHandler),
    (rf"/{API_PREFIX}/models/{MODEL}/versions/{VERSION}/files/{FILE}", models.FileHandler),
    (rf"/{API_PREFIX}/endpoints", endpoints.EndpointsHandler),
    (rf"/{API_PREFIX}/endpoints/{ENDPOINT}", endpoints.EndpointHandler),
    (rf"/{API_PREFIX}/endpoints/{ENDPOINT}/predict", endpoints.PredictHandler),
    (rf"/{API_PREFIX}/endpoints/{ENDPOINT}/promote", endpoints.PromoteHandler),
    (rf"/{API_PREFIX}/endpoints/{ENDPOINT}/rollback", endpoints.RollbackHandler),
    (rf"/{API_PREFIX}/endpoints/{ENDPOINT}/logs", endpoints.EndpointLogsHandler),
    (rf"/{API_PREFIX}/endpoints/{ENDPOINT}/stats", endpoints.EndpointStatsHandler),
    (rf"/{API_PREFIX}/pipelines/compile", pipelines.CompileHandler),
    (rf"/{API_PREFIX}/pipelines/export", pipelines.ExportHandler),
    (rf"/{API_PREFIX}/pipelines/runs", pipelines.RunsHandler),
    (rf"/{API_PREFIX}/pipelines/runs/{RUN}", pipelines.RunHandler),
    (rf"/{API_PREFIX}/pipelines/runs/{RUN}/cancel", pipelines.RunCancelHandler),
    (rf"/{API_PREFIX}/pipelines/runs/{RUN}/steps/{STEP}/logs", pipelines.StepLogsHandler),
    (rf"/{API_PREFIX}/pipelines/runs/{RUN}/steps/{STEP}/outputs", pipelines.StepOutputsHandler),
    (rf"/{API_PREFIX}/experiments", experiments.ExperimentsHandler),
    (rf"/{API_PREFIX}/runs", experiments.RunsHandler),
    (rf"/{API_PREFIX}/runs/compare", experiments.CompareHandler),
    (rf"/{API_PREFIX}/runs/{TRACKED_RUN}", experiments.RunHandler),
    (rf"/{API_PREFIX}/runs/{TRACKED_RUN}/rerun", experiments.RerunHandler),
    (rf"/{API_PREFIX}/notebook-runs", notebookruns.NotebookRunsHandler),
    (rf"/{API_PREFIX}/notebook-runs/parameters", notebookruns.ParametersHandler),
    (rf"/{API_PREFIX}/notebook-runs/{JOB}/results", notebookruns.ResultsHandler),
    (rf"/{API_PREFIX}/notebook-runs/{JOB}/output", notebookruns.OutputHandler),
    (rf"/{API_PREFIX}/events", handlers.EventsHandler),
    (rf"/{API_PREFIX}/settings", handlers.SettingsHandler),
]

EVENT_SCHEMA_FILE = Path(__file__).parent / "events" / "job.yaml"


class KFJupyter(Configurable):
    """The server's kfjupyter settings: ``c.KFJupyter.<name>`` in a jupyter_server config.

    Each falls back to an environment variable, then to a built-in default. The frontend
    reads them through ``GET /kfjupyter/api/v1/settings``.
    """

    default_backend = Unicode(
        help="Backend new jobs use unless told otherwise: 'local' or 'kubernetes' "
        "(default: $KFJUPYTER_BACKEND, else 'local')."
    ).tag(config=True)

    namespace = Unicode(
        None,
        allow_none=True,
        help="Kubernetes namespace for jobs (default: $KFJUPYTER_NAMESPACE, else the "
        "kubeconfig context's namespace, shown as null).",
    ).tag(config=True)

    tracking_uri = Unicode(
        None,
        allow_none=True,
        help="MLflow tracking server that every job's runs are also sent to (default: $MLFLOW_TRACKING_URI; "
        "null: none). Published to kernels as MLFLOW_TRACKING_URI.",
    ).tag(config=True)

    cluster_tracking_uri = Unicode(
        None,
        allow_none=True,
        help="MLflow tracking server as Kubernetes pods reach it (default: $KFJUPYTER_CLUSTER_TRACKING_URI, else "
        "tracking_uri unless it is a loopback address or a local store; 'none': Kubernetes jobs send nothing to "
        "MLflow). Published to kernels as KFJUPYTER_CLUSTER_TRACKING_URI.",
    ).tag(config=True)

    cluster_tracking_token_secret = Unicode(
        None,
        allow_none=True,
        help="Kubernetes Secret NAME[/KEY] (key default: token) holding the MLflow token that pods get as "
        "MLFLOW_TRACKING_TOKEN (default: $KFJUPYTER_CLUSTER_TRACKING_TOKEN_SECRET). Published to kernels as "
        "KFJUPYTER_CLUSTER_TRACKING_TOKEN_SECRET.",
    ).tag(config=True)

    image = Unicode(
        None,
        allow_none=True,
        help="Container image of training jobs on Kubernetes (default: $KFJUPYTER_IMAGE, "
        "else the training runtime's own image, shown as null).",
    ).tag(config=True)

    poll_interval = Float(
        1.0, help="Seconds between two looks of the job watcher at the workspace store."
    ).tag(config=True)

    keepalive_interval = Float(
        15.0, help="Seconds of silence after which an event stream sends a ': keepalive' comment."
    ).tag(config=True)

    watch_limit = Int(
        50, help="How many of the newest jobs the watcher looks at for new ones (it looks at every active job too)."
    ).tag(config=True)

    @default("default_backend")
    def _default_backend_default(self) -> str:
        return os.environ.get("KFJUPYTER_BACKEND") or "local"

    @default("namespace")
    def _namespace_default(self) -> str | None:
        return os.environ.get("KFJUPYTER_NAMESPACE") or None

    @default("tracking_uri")
    def _tracking_uri_default(self) -> str | None:
        return os.environ.get("MLFLOW_TRACKING_URI") or None

    @default("cluster_tracking_uri")
    def _cluster_tracking_uri_default(self) -> str | None:
        return os.environ.get("KFJUPYTER_CLUSTER_TRACKING_URI") or None

    @default("cluster_tracking_token_secret")
    def _cluster_tracking_token_secret_default(self) -> str | None:
        return os.environ.get("KFJUPYTER_CLUSTER_TRACKING_TOKEN_SECRET") or None

    @validate("cluster_tracking_token_secret")
    def _check_token_secret(self, proposal) -> str | None:
        if proposal.value:
            try:
                parse_token_secret(proposal.value)
            except InvalidOptionError as exc:
                raise TraitError(f"KFJupyter.cluster_tracking_token_secret: {exc}") from exc
        return proposal.value or None

    @default("image")
    def _image_default(self) -> str | None:
        return os.environ.get("KFJUPYTER_IMAGE") or None

    @validate("default_backend")
    def _check_backend(self, proposal) -> str:
        if proposal.value not in backend_names():
            raise TraitError(f"KFJupyter.default_backend must be one of {', '.join(backend_names())}, not {proposal.value!r}")
        return proposal.value

    @validate("namespace")
    def _check_namespace(self, proposal) -> str | None:
        if proposal.value:
            try:
                check_dns1123_label(proposal.value, "namespace")
            except InvalidOptionError as exc:
                raise TraitError(f"KFJupyter.namespace: {exc}") from exc
        return proposal.value or None

    @validate("image")
    def _check_image(self, proposal) -> str | None:
        value = proposal.value
        if value is not None and (not value.strip() or any(c.isspace() for c in value)):
            raise TraitError(f"KFJupyter.image: invalid image {value!r}")
        return value or None

    @validate("poll_interval", "keepalive_interval")
    def _check_positive(self, proposal) -> float:
        if proposal.value <= 0:
            raise TraitError(f"KFJupyter.{proposal.trait.name} must be > 0")
        return proposal.value

    @validate("watch_limit")
    def _check_limit(self, proposal) -> int:
        if proposal.value < 1:
            raise TraitError("KFJupyter.watch_limit must be >= 1")
        return proposal.value

    #: The environment variable each setting is also published as (see export_to_environment).
    ENVIRONMENT = {"default_backend": "KFJUPYTER_BACKEND", "namespace": "KFJUPYTER_NAMESPACE", "image": "KFJUPYTER_IMAGE",
                   "tracking_uri": "MLFLOW_TRACKING_URI", "cluster_tracking_uri": "KFJUPYTER_CLUSTER_TRACKING_URI",
                   "cluster_tracking_token_secret": "KFJUPYTER_CLUSTER_TRACKING_TOKEN_SECRET"}

    def export_to_environment(self) -> None:
        """Put the settings in this process's environment: the server's own calls into
        kfjupyter and every kernel it starts afterwards (kernels inherit the server's
        environment) then use the same defaults as the sidebar shows."""
        for trait, variable in self.ENVIRONMENT.items():
            value = getattr(self, trait)
            if value:
                os.environ[variable] = value
            else:
                os.environ.pop(variable, None)

    def to_dict(self) -> dict:
        return {
            "default_backend": self.default_backend,
            "namespace": self.namespace,
            "image": self.image,
            "backends": backend_names(),
        }


class KFJupyterApp(ExtensionApp):
    """kfjupyter's REST API and push updates inside jupyter_server."""

    name = "kfjupyter_server"
    load_other_extensions = True
    classes = [KFJupyter]

    kfconfig = Instance(KFJupyter, allow_none=True)
    watcher = Instance(JobWatcher, allow_none=True)

    def initialize_settings(self) -> None:
        self.kfconfig = KFJupyter(parent=self)
        self.kfconfig.export_to_environment()
        bus = self._register_event_schema()
        self.watcher = JobWatcher(
            interval=self.kfconfig.poll_interval,
            limit=self.kfconfig.watch_limit,
            event_logger=bus,
            log=self.log,
        )
        self.settings.update({"kfjupyter": self.kfconfig, "kfjupyter_watcher": self.watcher})
        self._publish_server_root()

    def _publish_server_root(self) -> None:
        """The server's root folder in the page config as ``kfjupyterServerRoot``: the sidebar
        turns a job's notebook (an absolute path) into a path it can open. JupyterLab's page
        config has it as ``serverRoot``; Notebook 7's has not."""
        root = str(self.serverapp.root_dir).replace(os.sep, "/")
        self.serverapp.web_app.settings.setdefault("page_config_data", {})["kfjupyterServerRoot"] = root

    def _register_event_schema(self):
        """Register the job event's schema on the server's event bus; None if that fails."""
        logger = getattr(self.serverapp, "event_logger", None)
        if logger is None:
            return None
        try:
            if JOB_EVENT_SCHEMA_ID not in logger.schemas.schema_ids:
                logger.register_event_schema(EVENT_SCHEMA_FILE)
        except Exception:  # an older jupyter_events: the SSE stream still works
            self.log.warning("kfjupyter: job events are not published on the event bus", exc_info=True)
            return None
        return logger

    def initialize_handlers(self) -> None:
        self.handlers.extend(ROUTES)

    async def _start_jupyter_server_extension(self, serverapp) -> None:
        # The server's event loop runs now: watch the store for the event bus's listeners.
        self.watcher.start()

    async def stop_extension(self) -> None:
        if self.watcher is not None:
            await self.watcher.stop()
