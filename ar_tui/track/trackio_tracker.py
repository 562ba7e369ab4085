"""Trackio (`pip install 'ar-tui[trackio]'`): local-first, on disk under
TRACKIO_DIR (`trackio show` opens its dashboard), or a self-hosted Trackio
server at `[track] uri`. The night is a run and each decided experiment a
run in the night's group (Trackio has no nested runs); runs are named, and
a resumed night reopens them by name (`resume="allow"`).

Trackio holds one current run per process: each experiment is opened,
logged and finished in turn, and the night's run is reopened to add its
point to the night's chart.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

from ar_tui.track.records import ExperimentRecord, Night
from ar_tui.track.sync import tracker_key


class TrackioTracker:
    name = "trackio"

    def __init__(self, uri: str | None = None, project: str | None = None) -> None:
        import trackio

        self.trackio = trackio
        self.uri = uri
        self.project = project or "ar-tui"
        from trackio.utils import TRACKIO_DIR

        self.key = tracker_key(self.name, uri or str(TRACKIO_DIR), self.project)

    def _open(self, name: str, group: str, config: dict[str, Any]) -> Any:
        return self.trackio.init(project=self.project, name=name, group=group, config=config, resume="allow",
                                 server_url=self.uri, embed=False, auto_log_gpu=False, auto_log_cpu=False)

    def open_night(self, night: Night, parent_id: str | None) -> str:
        # Trackio makes a run at its first logged point: the name is all there is until then.
        return parent_id or f"{night.tag}-{uuid.uuid4().hex[:6]}"

    def _open_night(self, night: Night, parent_id: str) -> Any:
        # Its config is stored with each first point after an init: given every time, it stays whole.
        return self._open(parent_id, night.tag, {
            "role": "night", "agent": night.agent, "model": night.model, "metric": night.metric,
            "direction": night.direction, "strategy": night.strategy, "target": night.target})

    def log_experiment(self, night: Night, parent_id: str, record: ExperimentRecord) -> str:
        name = f"{parent_id}-exp{record.exp}"
        run = self._open(name, night.tag, {"role": "experiment", **record.params(night), "parent_run": parent_id,
                                           **record.tags(night)})
        try:
            for step, value in enumerate(record.runs):
                run.log({f"{night.metric}_run": value}, step=step)
            run.log(record.metrics(night), step=len(record.runs))
            with tempfile.TemporaryDirectory() as scratch:
                for file_name, text in (("diff.patch", record.diff), ("log_tail.txt", record.log_tail)):
                    if text:
                        path = Path(scratch) / file_name
                        path.write_text(text, encoding="utf-8")
                        run.log_artifact(path, name=f"{name}-{file_name.replace('.', '-')}", type="experiment")
        finally:
            run.finish()
        if record.metric is not None:
            parent = self._open_night(night, parent_id)
            try:
                parent.log({night.metric: record.metric}, step=record.exp)  # the step is the experiment
            finally:
                parent.finish()
        return name

    def finish_night(self, night: Night, parent_id: str, records: list[ExperimentRecord],
                     artifacts: list[Path]) -> None:
        parent = self._open_night(night, parent_id)
        try:
            for path in artifacts:
                parent.log_artifact(path, name=f"{parent_id}-{path.name.replace('.', '-')}", type="report")
            stopped = night.stopped
            if stopped is not None:
                figures = {"night.experiments": stopped.experiments, "night.kept": stopped.kept,
                           "night.best": stopped.best_metric, "night.improvement_pct": stopped.improvement_pct,
                           "night.token_cost_usd": stopped.cost_usd, "night.gpu_cost_usd": stopped.gpu_cost_usd}
                parent.log({key: value for key, value in figures.items() if value is not None})
        finally:
            parent.finish()

    def close(self) -> None:
        pass
