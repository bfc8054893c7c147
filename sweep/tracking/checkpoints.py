"""A training's latest checkpoint, kept as an artifact of its MLflow run so that every worker, on
any machine, can resume it; found again along the runs a training continued."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from sweep.tracking.schema import ARTIFACT_CHECKPOINTS, TAG_CHECKPOINT, TAG_RESUMED_FROM
from sweep.tracking.store import retried
from sweep.training.checkpoint import Checkpoint, CheckpointError
from sweep.training.config import TrainConfig

log = logging.getLogger(__name__)


def artifacts(client: MlflowClient, run_id: str):
    """The run's artifact repository, for deleting."""
    return get_artifact_repository(client.get_run(run_id).info.artifact_uri, tracking_uri=client.tracking_uri)


@retried  # the same name uploaded, tagged and the old one deleted again
def save_checkpoint(client: MlflowClient, run_id: str, checkpoint: Checkpoint, replaces: str | None) -> str:
    """Upload the checkpoint under a new name, point the tag at it, then delete the one it
    replaces: a worker dying at any moment leaves a tag naming a complete checkpoint. Its path."""
    name = f"step-{checkpoint.step:09d}.npz"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / name).write_bytes(checkpoint.to_bytes())
        client.log_artifact(run_id, str(Path(tmp) / name), ARTIFACT_CHECKPOINTS)
    path = f"{ARTIFACT_CHECKPOINTS}/{name}"
    client.set_tag(run_id, TAG_CHECKPOINT, path)
    if replaces is not None and replaces != path:
        artifacts(client, run_id).delete_artifacts(replaces)
    return path


@retried  # read again before deleting
def delete_checkpoints(client: MlflowClient, run_id: str) -> None:
    """Delete a run's checkpoints and the tag that names them."""
    if TAG_CHECKPOINT in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, TAG_CHECKPOINT)
    artifacts(client, run_id).delete_artifacts(ARTIFACT_CHECKPOINTS)


def find_checkpoint(client: MlflowClient, run_id: str) -> tuple[str, Checkpoint] | None:
    """The latest checkpoint of a run's training: its own, else (if it stopped before writing
    one) that of the run it resumed from, and so on back. With the run that holds it. Raises
    CheckpointError if the named checkpoint cannot be read."""
    while run_id:
        run = client.get_run(run_id)
        if (path := run.data.tags.get(TAG_CHECKPOINT)) is not None:
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    local = client.download_artifacts(run_id, path, tmp)
                except (MlflowException, OSError) as e:
                    raise CheckpointError(
                        f"run {run_id}'s checkpoint {path} cannot be read ({type(e).__name__})"
                    ) from None
                return run_id, Checkpoint.from_bytes(Path(local).read_bytes())
        run_id = run.data.tags.get(TAG_RESUMED_FROM)
    return None


def resumable(
    client: MlflowClient, run_ids: Iterable[str], config: TrainConfig, who: str, source: str
) -> tuple[str, Checkpoint] | None:
    """The first checkpoint found among these runs (each followed back along the runs it
    resumed), with the run holding it, and one line saying that `who` resumes `source` from it.
    One that cannot be read, or is of another configuration than `config`, is not used: `who`
    trains from scratch, and the line says why."""
    try:
        found = next(filter(None, (find_checkpoint(client, run_id) for run_id in run_ids)), None)
        if found is not None:
            found[1].check_fits(config)
    except CheckpointError as e:
        log.info(f"{who} trains from scratch: the checkpoint of {source} is of no use ({e})")
        return None
    if found is not None:
        log.info(f"{who} resumes {source} from its checkpoint at step {found[1].step}")
    return found
