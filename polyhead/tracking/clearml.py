"""ClearML: a Task per run, on the configured server or, with `tracking.clearml.offline`, in a
local offline session (`~/.clearml/cache/offline/<task id>/` and a `.zip` of it) that
`clearml-task import` / `Task.import_offline_session` uploads later.

ClearML's automatic capture (frameworks, argparse, console, resource monitor) is switched off:
polyhead logs exactly what it means to. Its metrics reporter is kept in this process: on Linux
it defaults to a subprocess, and `Task.close()` then waits for that subprocess's flush in 1 s
polls (10-15 s per run here, far more after uploading artifacts); in-process, close is immediate.
"""

from __future__ import annotations

from pathlib import Path

from polyhead.tracking.base import Tracker, missing_library, register_tracker


@register_tracker("clearml")
class ClearMLTracker(Tracker):
    def __init__(self, *, experiment: str, offline: bool = False, **_):
        self.project = experiment
        self.offline = offline
        self.task = None

    def start(self, run_dir: Path, run_name: str, resume_info: dict | None) -> dict:
        try:
            from clearml import Task
        except ImportError:
            raise missing_library("clearml", "clearml") from None
        Task.set_offline(self.offline)
        Task._report_subprocess_enabled = False  # the `sdk.development.report_use_subprocess` setting, see above
        # an offline session cannot be reopened: a resumed offline run is a new task
        previous = None if self.offline or not resume_info else resume_info.get("task_id")
        self.task = Task.init(project_name=self.project, task_name=run_name, reuse_last_task_id=False,
                              continue_last_task=previous or False, auto_connect_frameworks=False,
                              auto_resource_monitoring=False, auto_connect_arg_parser=False,
                              auto_connect_streams=False)
        info = {"task_id": self.task.id, "project": self.project, "offline": self.offline}
        if self.offline:
            folder = Path(self.task.get_offline_mode_folder())
            info.update(offline_folder=str(folder), offline_zip=str(folder) + ".zip")
        return info

    def log_params(self, flat: dict[str, str]) -> None:
        self.task.connect(dict(flat), name="config")

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        logger = self.task.get_logger()
        for key, value in values.items():
            title, _, series = key.rpartition("/")  # "val/quadrant/accuracy" -> plot "val/quadrant", line "accuracy"
            logger.report_scalar(title or series, series, float(value), iteration=step)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.task.set_user_properties(**{k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        name = f"{artifact_path}/{path.name}" if artifact_path else path.name
        self.task.upload_artifact(name, artifact_object=str(path), wait_on_upload=True)

    def finish(self, status: str = "FINISHED") -> None:
        if self.task is None:
            return
        if status == "FAILED":
            self.task.mark_failed(ignore_errors=True, status_reason="training raised an exception")
        elif status == "KILLED":
            self.task.mark_stopped(force=True)
        self.task.close()
        self.task = None

    def where(self) -> str | None:
        if self.task is None:
            return None
        if self.offline:
            return f"ClearML offline session: {self.task.get_offline_mode_folder()}.zip"
        return f"ClearML task: {self.task.get_output_log_web_page()}"
