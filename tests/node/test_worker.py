"""The round's job: a round whose folder is gone fails with a sentence saying why."""

from pathlib import Path

import pytest
from sample_pipelines import CopyPipeline

from dicomflow.engine.pipeline_ref import PipelineRef
from dicomflow.engine.round_job import WorkerTask, process_round
from dicomflow.errors import ProcessingError


def test_a_round_whose_folder_is_gone_fails_naming_it(tmp_path: Path) -> None:
    gone = tmp_path / "rounds" / "0123abcd"
    task = WorkerTask(PipelineRef.of(CopyPipeline), "0123abcd", "patient", {}, str(gone))

    with pytest.raises(ProcessingError, match=r'Round 0123abcd: its folder ".*0123abcd" does not'):
        process_round(**task.to_kwargs())
    assert not gone.exists()
