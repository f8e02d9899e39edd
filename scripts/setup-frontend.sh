#!/usr/bin/env bash
# What the frontend and its tests need, after scripts/setup.sh's editable install:
#   1. Debian's Chromium (/usr/bin/chromium) for tests/browser: never a downloaded browser;
#   2. node_modules, reinstalled only when package.json or yarn.lock changed;
#   3. the labextension (kfjupyter/labextension), rebuilt only when a source is newer;
#   4. the labextension linked into .venv, as `jupyter-builder develop . --overwrite` does,
#      so the JupyterLab of .venv serves this checkout's build, not a stale copy.
# Safe and quick to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.venv/bin:$PATH"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup-frontend: installing chromium (Debian package)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup-frontend: /usr/bin/chromium is missing and this is not root: the browser tests will be skipped" >&2
  fi
fi

command -v node >/dev/null || { echo "setup-frontend: node is not on PATH" >&2; exit 1; }

stamp=node_modules/.yarn-state.yml
if [ ! -f "$stamp" ] || [ package.json -nt "$stamp" ] || [ yarn.lock -nt "$stamp" ] || [ .yarnrc.yml -nt "$stamp" ]; then
  echo "setup-frontend: jlpm install"
  jlpm install --immutable
  touch "$stamp"
fi

built=kfjupyter/labextension/package.json
if [ ! -f "$built" ] || [ -n "$(find labextension package.json tsconfig.json -newer "$built" -not -path 'labextension/lib/*' -print -quit)" ]; then
  echo "setup-frontend: jlpm build:prod"
  jlpm build:prod
fi

# The labextensions folder of .venv's JupyterLab: a symlink to the build here.
link=.venv/share/jupyter/labextensions/kfjupyter
target="$PWD/kfjupyter/labextension"
if [ "$(readlink "$link" 2>/dev/null || true)" != "$target" ]; then
  mkdir -p "$(dirname "$link")"
  rm -rf "$link"
  ln -s "$target" "$link"
fi
