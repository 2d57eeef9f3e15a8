"""What a pipeline does with one round, in the round's queue job: build the inputs from
the round's instance files, call ``process()``, write the durable outputs (with their
manifest) into the round's ``output/`` folder and send the others.

The job (:mod:`dicomflow.engine.round_job`) calls it through
``AbstractPipeline._run_round`` with the round's work (see :class:`RoundWork`).
"""

import logging
from pathlib import Path
from typing import Any

from dicomflow.address import Address
from dicomflow.engine.protocols import RoundWork
from dicomflow.node.container import InputContainer
from dicomflow.node.input import InputOptions
from dicomflow.node.output import normalise, send_custom, write_outputs

logger = logging.getLogger(__name__)


def run_round(pipeline_class: Any, work: RoundWork) -> int:
    """Run the pipeline's processor on the round; return the number of datasets written.

    Raises:
        ProcessingError: if a user's ``send()`` returned false or raised (as anything
            ``process()`` raises, it fails the round).
    """
    container = _build_container(pipeline_class, work)
    processor = pipeline_class.Processor()
    processor.bind(pipeline_class, work.round_id, work.patient_key, work.work_dir)
    logger.info("round %s: process() started", work.round_id)
    result = processor.process(container)
    outputs = normalise(result, work.endpoints, work.ae_title)
    manifest = write_outputs(outputs, work.output_dir)
    send_custom(outputs, work.round_id)  # a false or raising send() fails the round
    count = sum(len(entry["files"]) for entry in manifest["outputs"])
    logger.info("round %s: process() returned %d dataset(s)", work.round_id, count)
    return count


def _build_container(pipeline_class: Any, work: RoundWork) -> InputContainer:
    data: dict[str, Any] = {}
    paths: dict[str, list[Path]] = {}
    for name, members in work.inputs.items():
        input_object = pipeline_class.input[name](InputOptions(ae_title=work.ae_title))
        input_object.load((uid, Path(path)) for uid, path in members)
        data[name] = input_object.get_data()
        paths[name] = [Path(path) for _, path in members]
    return InputContainer(
        data,
        paths=paths,
        round_id=work.round_id,
        patient_key=work.patient_key,
        responding_address=_responding_address(pipeline_class, work.caller),
    )


def _responding_address(pipeline_class: Any, caller: tuple[str, str] | None) -> Address | None:
    """The address of the peer that completed the round: from the pipeline's
    ``known_endpoints`` (by AE title), else its IP with ``default_response_port``."""
    if caller is None:
        return None
    ae_title, ip = caller
    known = getattr(pipeline_class, "known_endpoints", None) or {}
    if ae_title in known:
        return known[ae_title]  # type: ignore[no-any-return]
    return Address(ip, int(getattr(pipeline_class, "default_response_port", 104)), ae_title)
