"""A pipeline with a historic input (importable by the processing workers): the PACS it
fetches from listens on ``$DICOMFLOW_TEST_HISTORIC_PORT``."""

import json
import os
from typing import Any

from sample_pipelines import records_directory

from dicomflow.dicom.grinders import list_grinder
from dicomflow.node import AbstractInput, AbstractPipeline, AbstractProcessor, Address
from dicomflow.server.input import HistoricAbstractInput

PORT_VARIABLE = "DICOMFLOW_TEST_HISTORIC_PORT"


class NewStudy(AbstractInput):
    required_tags = ["SOPInstanceUID", "StudyDate"]
    enforce_single_study_date = True
    image_grinder = staticmethod(list_grinder)


class PriorStudies(HistoricAbstractInput):
    required_tags = ["SOPInstanceUID", "StudyDate", "SeriesDescription"]
    address = Address("127.0.0.1", int(os.environ.get(PORT_VARIABLE, "104")), "ORTHANC")


class HistoricPipeline(AbstractPipeline):
    ae_title = "DICOMFLOW"
    input = {"new": NewStudy, "history": PriorStudies}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            history = input_container["history"]
            record = {
                "new": sorted({str(ds.StudyInstanceUID) for ds in input_container["new"]}),
                "history": {
                    date: {name: len(datasets) for name, datasets in series.items()}
                    for date, series in history.items()
                },
            }
            (records_directory(self) / "historic.json").write_text(json.dumps(record))
            return []
