"""Copy the Kubernetes ``batch/v1`` Job schema into ``kfjupyter/k8s/schemas/``.

The source is the JSON Schema that the ``kubernetes-validate`` package ships, generated from
the OpenAPI definitions of a Kubernetes release (``kubernetes-json-schema/vX.Y.Z-local-strict/
_definitions.json``: strict, an undeclared field is an error). The copy holds the definitions
that ``io.k8s.api.batch.v1.Job`` reaches, unchanged, under ``$defs``, with the Job as the root::

    pip download kubernetes-validate==1.37.0 --no-deps -d /tmp/kv
    python scripts/vendor_job_schema.py /tmp/kv/kubernetes_validate-1.37.0-py3-none-any.whl v1.33.0
"""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path

ROOT = "io.k8s.api.batch.v1.Job"


def closure(defs: dict, name: str) -> dict:
    seen: dict = {}

    def walk(node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    ref = value.rsplit("/", 1)[-1]
                    if ref not in seen:
                        seen[ref] = defs[ref]
                        walk(defs[ref])
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    seen[name] = defs[name]
    walk(defs[name])
    return dict(sorted(seen.items()))


def main(wheel: str, release: str) -> None:
    member = f"kubernetes_validate/kubernetes-json-schema/{release}-local-strict/_definitions.json"
    with zipfile.ZipFile(wheel) as zf:
        raw = zf.read(member)
    defs = json.loads(raw)["$defs"]
    out = Path(__file__).resolve().parents[1] / "kfjupyter" / "k8s" / "schemas" / f"kubernetes-{release}" / "batch.v1.Job.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"{ROOT} and the definitions it reaches, unchanged, from {Path(wheel).name}:{member} "
                    f"(sha256 {hashlib.sha256(raw).hexdigest()})",
        "$ref": f"#/$defs/{ROOT}",
        "$defs": closure(defs, ROOT),
    }
    out.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    print(f"{out}: {len(doc['$defs'])} definitions")


if __name__ == "__main__":
    main(*sys.argv[1:3])
