"""Acceptance 2: the project's wheel, installed into a new venv without Node, gives a
JupyterLab with the Kubeflow sidebar: the prebuilt labextension ships in the wheel and
the server extension is enabled by the wheel's jupyter-config."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO, SCREENSHOTS, chromium_page, running_lab

# pip wheel + a new venv from PyPI: minutes on a busy 2-core machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

EXT = "share/jupyter/labextensions/kfjupyter"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float) -> str:
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return ANSI.sub("", done.stdout + done.stderr)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel . --no-deps`` of this checkout (Node on PATH for the frontend build)."""
    out = tmp_path_factory.mktemp("wheel")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--quiet", "-w", str(out)], env, REPO, 600)
    (found,) = out.glob("kfjupyter-*.whl")
    return found


def test_wheel_ships_the_prebuilt_labextension(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    data = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".data"))
    prefix = f"{data}/data/"
    for required in (
        f"{EXT}/package.json",
        f"{EXT}/install.json",
        f"{EXT}/static/style.js",
        f"{EXT}/schemas/kfjupyter/plugin.json",
        "etc/jupyter/jupyter_server_config.d/kfjupyter.json",
    ):
        assert prefix + required in names, required
    assert any(n.startswith(f"{prefix}{EXT}/static/remoteEntry.") for n in names)
    # Only the built extension: no sources, node_modules or a second copy in the package.
    assert not [n for n in names if "node_modules" in n or n.startswith("kfjupyter/labextension/")]
    assert not [n for n in names if n.endswith((".ts", ".tsx"))]


def test_wheel_in_a_new_venv_without_node(wheel, tmp_path):
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(target)
    bin_dir = target / "bin"
    # Nothing but the new venv on PATH: no node, no jlpm, no project venv.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VIRTUAL_ENV", "PYTHON", "JUPYTER", "CONDA"))
    }
    env["PATH"] = str(bin_dir)
    env["HOME"] = os.environ.get("HOME", str(tmp_path))
    env["KFJUPYTER_HOME"] = str(tmp_path / "kfhome")
    assert shutil.which("node", path=env["PATH"]) is None
    run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile", str(wheel)], env, tmp_path, 600)

    labext = run([str(bin_dir / "jupyter"), "labextension", "list"], env, tmp_path, 120)
    line = next((ln for ln in labext.splitlines() if "kfjupyter" in ln), "")
    assert "enabled" in line and "OK" in line and "(python, kfjupyter)" in line, labext
    serverext = run([str(bin_dir / "jupyter"), "server", "extension", "list"], env, tmp_path, 120)
    assert "kfjupyter_server enabled" in " ".join(serverext.split()), serverext
    assert "kfjupyter_server 0.1.0 OK" in " ".join(serverext.split()), serverext

    # The sidebar loads in that venv's JupyterLab (token auth on, no node anywhere).
    from playwright.sync_api import expect

    with running_lab(bin_dir, tmp_path / "lab", env=env) as lab, chromium_page() as page:
        status, _ = lab.api("kfjupyter/api/v1/jobs", token="")
        assert status in (401, 403)
        page.goto(f"{lab.url}/lab?token={lab.token}")
        tab = page.locator('.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="kfjupyter-sidebar"]')
        expect(tab).to_be_visible(timeout=60_000)
        tab.click()
        sidebar = page.locator("#kfjupyter-sidebar")
        expect(sidebar.locator(".kf-JobsPanel-empty")).to_contain_text("No jobs yet")
        expect(sidebar.locator('[data-connection="live"]')).to_be_visible(timeout=30_000)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        sidebar.screenshot(path=str(SCREENSHOTS / "wheel-sidebar.png"))
        assert not [e for e in page.kf_errors if "kfjupyter" in e.lower()], page.kf_errors
