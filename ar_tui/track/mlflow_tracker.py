"""MLflow (`pip install 'ar-tui[mlflow]'`): the night is a run in the
experiment named by `[track] project` (default "ar-tui"), each decided
experiment a nested run under it (`mlflow.parentRunId`), through MLflow's
own `MlflowClient`. The server is `[track] uri`, else MLFLOW_TRACKING_URI,
else MLflow's default (./mlruns).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ar_tui.track.records import ExperimentRecord, Night
from ar_tui.track.sync import tracker_key

EXP_TAG = "ar_tui.exp"
# MLflow's HTTP client retries a refused connection for minutes by default;
# a tracker that is down should cost seconds, and be retried from the ledger later.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
PARAM_CHARS = 500  # what every MLflow backend store accepts


class MlflowTracker:
    name = "mlflow"

    def __init__(self, uri: str | None = None, project: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri) if uri else MlflowClient()
        self.project = project or "ar-tui"
        self.key = tracker_key(self.name, self.client.tracking_uri, self.project)
        self._experiment_id: str | None = None

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.project)
            # The kind tag opens MLflow 3's UI on its training view, not its GenAI one.
            self._experiment_id = found.experiment_id if found else self.client.create_experiment(
                self.project, tags={"mlflow.experimentKind": "custom_model_development"})
        return self._experiment_id

    def open_night(self, night: Night, parent_id: str | None) -> str:
        if parent_id is not None:
            self.client.update_run(parent_id, status="RUNNING")  # a resumed night: the same run
            return parent_id
        from mlflow.entities import Param, RunTag

        run = self.client.create_run(self.experiment_id, run_name=night.tag, tags={
            "ar_tui.role": "night", "ar_tui.run_dir": str(night.run_dir), "strategy": night.strategy})
        params = {"agent": night.agent, "model": night.model, "metric": night.metric, "direction": night.direction,
                  "strategy": night.strategy, "target": night.target}
        self.client.log_batch(run.info.run_id, params=[Param(k, v[:PARAM_CHARS]) for k, v in params.items()],
                              tags=[RunTag("mlflow.note.content", f"ar-tui night {night.tag} on {night.target}")])
        return run.info.run_id

    def log_experiment(self, night: Night, parent_id: str, record: ExperimentRecord) -> str:
        from mlflow.entities import Metric, Param

        # A child logged just before a crash (its id never reached track.json) is found, not made twice.
        found = self.client.search_runs(
            [self.experiment_id], max_results=1,
            filter_string=f"tags.mlflow.parentRunId = '{parent_id}' and tags.`{EXP_TAG}` = '{record.exp}'")
        if found:
            return found[0].info.run_id
        name = f"{record.exp}: {record.description}"[:100]
        run = self.client.create_run(self.experiment_id, run_name=name, tags={
            **record.tags(night), "mlflow.parentRunId": parent_id, EXP_TAG: str(record.exp)})
        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, 0) for key, value in record.metrics(night).items()]
        metrics += [Metric(f"{night.metric}_run", value, now, step) for step, value in enumerate(record.runs)]
        params = [Param(key, value[:PARAM_CHARS]) for key, value in record.params(night).items()]
        self.client.log_batch(run.info.run_id, metrics=metrics, params=params)
        if record.diff:
            self.client.log_text(run.info.run_id, record.diff, "diff.patch")
        if record.log_tail:
            self.client.log_text(run.info.run_id, record.log_tail, "log_tail.txt")
        self.client.set_terminated(run.info.run_id, status="FAILED" if record.status == "crash" else "FINISHED")
        if record.metric is not None:  # the night's own chart: one point per decided experiment
            self.client.log_metric(parent_id, night.metric, record.metric, step=record.exp)
        return run.info.run_id

    def finish_night(self, night: Night, parent_id: str, records: list[ExperimentRecord],
                     artifacts: list[Path]) -> None:
        for path in artifacts:
            self.client.log_artifact(parent_id, str(path))
        stopped = night.stopped
        if stopped is not None:
            summary = {"experiments": stopped.experiments, "kept": stopped.kept, "best": stopped.best_metric,
                       "baseline": stopped.baseline_metric, "improvement_pct": stopped.improvement_pct,
                       "token_cost_usd": stopped.cost_usd, "gpu_cost_usd": stopped.gpu_cost_usd,
                       "gpu_seconds": stopped.gpu_seconds}
            for key, value in summary.items():
                if value is not None:
                    self.client.log_metric(parent_id, f"night.{key}", float(value))
            self.client.set_tag(parent_id, "stopped", stopped.reason[:PARAM_CHARS])
        failed = stopped is not None and stopped.error
        self.client.set_terminated(parent_id, status="FAILED" if failed else "FINISHED")

    def close(self) -> None:
        pass
