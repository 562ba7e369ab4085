"""Weights & Biases (`pip install 'ar-tui[wandb]'`): the night is a run
(job type "night") and each decided experiment a run of its own (job type
"experiment") in the night's group, through the `wandb` client. W&B has no
nested runs: the group ties them, and each experiment's `parent_run`
config names the night's run. `[track] uri` is the W&B server (else
WANDB_BASE_URL, else W&B's); WANDB_MODE=offline keeps the runs on disk
(under the run dir, unless WANDB_DIR says otherwise) for `wandb sync`.

The run ids are made here, so a resumed night's `wandb.init(id=...,
resume="allow")` continues the same runs.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from ar_tui.track.records import ExperimentRecord, Night
from ar_tui.track.sync import tracker_key


class WandbTracker:
    name = "wandb"

    def __init__(self, uri: str | None = None, project: str | None = None) -> None:
        import wandb

        self.wandb = wandb
        self.uri = uri
        self.project = project or "ar-tui"
        self.key = tracker_key(self.name, uri or os.environ.get("WANDB_BASE_URL", "default"), self.project)
        self._parent: Any = None

    def _init(self, night: Night, **kwargs: Any) -> Any:
        # The app owns the terminal: W&B must neither print nor capture stdout.
        settings = self.wandb.Settings(silent=True, console="off", x_disable_stats=True, disable_git=True,
                                       save_code=False, **({"base_url": self.uri} if self.uri else {}))
        return self.wandb.init(project=self.project, group=night.tag, resume="allow", reinit="create_new",
                               dir=os.environ.get("WANDB_DIR") or str(night.run_dir), settings=settings, **kwargs)

    def open_night(self, night: Night, parent_id: str | None) -> str:
        if self._parent is not None and self._parent.id == parent_id:
            return parent_id
        run_id = parent_id or uuid.uuid4().hex[:8]
        self._parent = self._init(night, id=run_id, name=night.tag, job_type="night", config={
            "agent": night.agent, "model": night.model, "metric": night.metric, "direction": night.direction,
            "strategy": night.strategy, "target": night.target})
        return run_id

    def log_experiment(self, night: Night, parent_id: str, record: ExperimentRecord) -> str:
        run_id = f"{parent_id}-{record.exp}"
        tags = record.tags(night)
        run = self._init(night, id=run_id, name=f"{record.exp}: {record.description}"[:100], job_type="experiment",
                         config={**record.params(night), "parent_run": parent_id, **tags},
                         tags=[f"{key}:{value}" for key, value in tags.items() if key != "rule" and value][:20])
        try:
            for step, value in enumerate(record.runs):
                run.log({f"{night.metric}_run": value}, step=step)
            run.summary.update(record.metrics(night))
            files = {"diff.patch": record.diff, "log_tail.txt": record.log_tail}
            with tempfile.TemporaryDirectory() as scratch:
                artifact = self.wandb.Artifact(f"exp-{parent_id}-{record.exp}", type="experiment")
                for name, text in files.items():
                    if text:
                        (Path(scratch) / name).write_text(text, encoding="utf-8")
                        artifact.add_file(str(Path(scratch) / name), name=name)
                run.log_artifact(artifact)
                run.finish(exit_code=1 if record.status == "crash" else 0)
        except BaseException:
            run.finish(exit_code=1)
            raise
        if record.metric is not None:
            self._parent.log({night.metric: record.metric, "exp": record.exp})
        return run_id

    def finish_night(self, night: Night, parent_id: str, records: list[ExperimentRecord],
                     artifacts: list[Path]) -> None:
        parent = self._parent
        if artifacts:
            artifact = self.wandb.Artifact(f"night-{parent_id}", type="report")
            for path in artifacts:
                artifact.add_file(str(path), name=path.name)
            parent.log_artifact(artifact)
        stopped = night.stopped
        if stopped is not None:
            parent.summary.update({key: value for key, value in {
                "experiments": stopped.experiments, "kept": stopped.kept, "best": stopped.best_metric,
                "baseline": stopped.baseline_metric, "improvement_pct": stopped.improvement_pct,
                "token_cost_usd": stopped.cost_usd, "gpu_cost_usd": stopped.gpu_cost_usd,
                "stopped": stopped.reason}.items() if value is not None})
        parent.finish(exit_code=1 if stopped is not None and stopped.error else 0)
        self._parent = None

    def close(self) -> None:
        if self._parent is not None:
            self._parent.finish()
            self._parent = None
