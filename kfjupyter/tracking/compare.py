"""``kfjupyter.compare(run_a, run_b, …)``: what changed between runs and what it gave."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InvalidOptionError
from .model import Run, as_run_id, get_run, history

_MISSING = object()


def curve_rows(rows: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """Each metric's curve of a run: (step, value) of its lowest rank's reports (the step
    is the report's ``step``, else its position)."""
    if not rows:
        return {}
    lowest = min((r.get("rank") or 0) for r in rows)
    curves: dict[str, list[tuple[float, float]]] = {}
    for i, row in enumerate(r for r in rows if (r.get("rank") or 0) == lowest):
        step = row.get("step")
        x = float(step) if isinstance(step, (int, float)) else float(i)
        for key, value in row.items():
            if key not in ("rank", "step", "time", "run", "pipeline_step") and isinstance(value, (int, float)):
                curves.setdefault(key, []).append((x, float(value)))
    return curves


@dataclass
class Comparison:
    """Runs side by side: ``params`` that differ (a DataFrame: a row per param, a column per
    run), ``metrics`` (the final values), ``curves`` (metric → run id → [(step, value)])."""

    runs: list[Run]
    differing: dict[str, dict[str, Any]]
    final: dict[str, dict[str, Any]]
    curves: dict[str, dict[str, list[tuple[float, float]]]]

    @property
    def params(self):
        import pandas as pd

        return pd.DataFrame(self.differing, index=[r.run_id for r in self.runs]).T

    @property
    def metrics(self):
        import pandas as pd

        return pd.DataFrame(self.final, index=[r.run_id for r in self.runs]).T

    def curves_frame(self, metric: str):
        """One metric's curves as a DataFrame (index: step, a column per run): ``.plot()`` overlays them."""
        import pandas as pd

        series = {rid: pd.Series(dict(points)) for rid, points in self.curves.get(metric, {}).items()}
        return pd.DataFrame(series)

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": [r.to_dict() for r in self.runs],
            "params": [{"name": k, "values": [v.get(r.run_id) for r in self.runs]} for k, v in self.differing.items()],
            "metrics": [{"name": k, "values": [v.get(r.run_id) for r in self.runs]} for k, v in self.final.items()],
            "curves": {m: [{"run_id": rid, "points": [list(p) for p in pts]} for rid, pts in by_run.items()]
                       for m, by_run in self.curves.items()},  # fmt: skip
        }

    def _repr_html_(self) -> str:
        names = ", ".join(r.run_id for r in self.runs)
        return (f"<b>Runs {names}</b><h4>Params that differ</h4>{self.params.to_html()}"
                f"<h4>Final metrics</h4>{self.metrics.to_html()}")  # fmt: skip


def compare(*refs: Any) -> Comparison:
    """Compare runs (ids, Jobs or Runs; at least two): the params that differ between them,
    their final metrics, and every metric's curve per run."""
    if len(refs) == 1 and isinstance(refs[0], (list, tuple)):
        refs = tuple(refs[0])
    ids = list(dict.fromkeys(as_run_id(r) for r in refs))
    if len(ids) < 2:
        raise InvalidOptionError(f"compare needs at least two different runs, got {len(ids)}")
    runs = [get_run(i) for i in ids]
    names = sorted({k for r in runs for k in r.params})
    differing = {}
    for name in names:
        values = [r.params.get(name, _MISSING) for r in runs]
        if any(v != values[0] for v in values[1:]):
            differing[name] = {r.run_id: (None if v is _MISSING else v) for r, v in zip(runs, values)}
    final = {k: {r.run_id: r.metrics.get(k) for r in runs} for k in sorted({k for r in runs for k in r.metrics})}
    curves: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for run in runs:
        for metric, points in curve_rows(history(run)).items():
            curves.setdefault(metric, {})[run.run_id] = points
    return Comparison(runs, differing, final, curves)
