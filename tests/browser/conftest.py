"""Real-browser tests: a real ``jupyter lab`` (token auth on) driven by Debian's Chromium.

The server runs on 127.0.0.1 with a random token, its own config/settings/workspace
folders and the test's workspace store (``KFJUPYTER_HOME`` from the autouse
``workspace`` fixture). Chromium is ``/usr/bin/chromium`` (``apt-get install chromium``,
done by scripts/setup-frontend.sh); Playwright never downloads a browser here.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("KFJUPYTER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(os.environ.get("KFJUPYTER_SCREENSHOTS", REPO / "tests" / "browser" / "screenshots"))
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path
    process: subprocess.Popen

    def api(self, path: str, token: str | None = None, method: str = "GET") -> tuple[int, bytes]:
        """A request straight to the server (``token=None``: the lab's token, ``''``: none)."""
        request = urllib.request.Request(f"{self.url}/{path.lstrip('/')}", method=method)
        use = self.token if token is None else token
        if use:
            request.add_header("Authorization", f"token {use}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: run scripts/setup-frontend.sh (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def running_lab(bin_dir: Path, base: Path, env: dict[str, str] | None = None, app: str = "lab") -> Iterator[Lab]:
    """``bin_dir/jupyter-lab`` (``app="notebook"``: ``jupyter-notebook``, Notebook 7) on
    127.0.0.1 with a random token, serving ``base/notebooks``.

    Config, runtime, settings and workspace folders are private to ``base``, so neither
    the user's settings nor a layout saved by an earlier run are picked up.
    """
    root = base / "notebooks"
    root.mkdir(parents=True)
    private = base / "jupyter"
    for sub in ("config", "runtime", "settings", "workspaces"):
        (private / sub).mkdir(parents=True)
    # No "get notified about Jupyter news?" prompt over the screenshots.
    notification = private / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # Kale (a test extra: the oracle of tests/test_kale_conformance.py) brings its own
    # JupyterLab and server extensions, which pop up an error dialog without a Kubeflow
    # Pipelines to talk to: a user's JupyterLab has kfjupyter, not both.
    (private / "config" / "labconfig").mkdir()
    (private / "config" / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"jupyterlab-kubeflow-kale": True}}))
    (private / "config" / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"jupyterlab_kubeflow_kale": False}}}))
    token = secrets.token_hex(24)
    port = free_port()
    full_env = dict(os.environ if env is None else env)
    full_env.update(
        JUPYTER_CONFIG_DIR=str(private / "config"),
        JUPYTER_RUNTIME_DIR=str(private / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(private / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(private / "workspaces"),
        PYTHONUNBUFFERED="1",
    )
    if env is None:
        full_env["PATH"] = f"{bin_dir}{os.pathsep}{full_env.get('PATH', '')}"
    log = base / "jupyter-lab.log"
    command = [
        str(bin_dir / f"jupyter-{app}"),
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.allow_root=True",
        "--ServerApp.open_browser=False",
        # The server's job watcher: look at the store twice a second.
        "--KFJupyter.poll_interval=0.5",
    ]
    if app == "lab":
        command += ["--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=root, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Lab(url=f"http://127.0.0.1:{port}", token=token, root=root, log=log, process=process)
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"jupyter {app} exited with {process.returncode}:\n{server.log_tail()}")
            try:
                status, _ = server.api("api/status")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer within 90 s:\n{server.log_tail()}")
            time.sleep(0.25)
        yield server
    finally:
        _stop(process)


@pytest.fixture
def lab(workspace, tmp_path) -> Iterator[Lab]:
    """The project's JupyterLab (.venv), with the test's workspace store."""
    built = REPO / "kfjupyter" / "labextension" / "package.json"
    if not built.exists():
        pytest.fail("the labextension is not built: run scripts/setup-frontend.sh")
    # KFJUPYTER_HOME is the test's (set by the autouse `workspace` fixture).
    assert os.environ.get("KFJUPYTER_HOME") == str(workspace)
    with running_lab(BIN, tmp_path) as server:
        yield server


def _stop(process: subprocess.Popen) -> None:
    """Stop the server (it shuts its kernels down), then anything left in its session."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@contextlib.contextmanager
def chromium_page():
    """A Chromium page (1400×900), its console errors collected in ``page.kf_errors``."""
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            page.kf_errors = errors  # type: ignore[attr-defined]
            yield page
        finally:
            browser.close()


@pytest.fixture
def browser_page(lab):
    with chromium_page() as page:
        yield page


def write_notebook(path: Path, cells: list[str]) -> Path:
    """A minimal nbformat-4 notebook of code cells, with the python3 kernel."""
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "id": f"cell-{i}", "metadata": {}, "outputs": [], "source": src}
            for i, src in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb, indent=1))
    return path


def show_sections(sidebar, *names: str) -> None:
    """Unfold the Kubeflow sidebar's sections titled ``names`` and fold every other one
    (whatever order the plugins added them in), so those get the sidebar's height."""
    titles = sidebar.locator(".jp-AccordionPanel-title")
    shown = [t.strip().title() for t in titles.all_inner_texts()]  # CSS shows them upper-case
    assert set(names) <= set(shown), f"no section {sorted(set(names) - set(shown))} in the sidebar: {shown}"
    for i, name in enumerate(shown):
        title = titles.nth(i)
        wanted = name in names
        if (title.get_attribute("aria-expanded") == "true") != wanted:
            title.click()


#: The Kubeflow sidebar's sections (their titles), as the plugins add them.
SECTIONS = ("Jobs", "Tuning", "Models", "Endpoints", "Pipeline", "Experiments")


def open_sidebar(page):
    """Open the Kubeflow sidebar (its tab in the left area); returns it, all its sections there."""
    from playwright.sync_api import expect

    page.locator('.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="kfjupyter-sidebar"]').click()
    sidebar = page.locator("#kfjupyter-sidebar")
    expect(sidebar.locator(".jp-AccordionPanel-title")).to_have_count(len(SECTIONS))
    return sidebar
