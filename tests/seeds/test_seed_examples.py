"""The seed documents' examples run with only the import root changed to ``dicomflow``."""

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pydicom

from dicomflow.dicom.factory import make_ct_series, write_series
from support import StoreSCPPeer, free_port, storescu, wait_for, wait_for_port

TUTORIAL = """
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List

from pydicom import Dataset

from dicomflow.lib.dimse import Address
from dicomflow.lib.grinders import GrindType, list_grinder as grinder_function
from dicomflow.server.input import AbstractInput
from dicomflow.server.node import AbstractPipeline


class MyInput(AbstractInput):
  required_tags: List[int] = [0x00080018, 0x7FE00010] # SOPInstanceUID, Pixel Data
  required_values: Dict[int, Any] = {}
  image_grinder: Callable[[Iterator[Dataset]], GrindType] = staticmethod(grinder_function)

  def validate(self) -> bool:
    return self.images >= 3


class MyPipeline(AbstractPipeline):
  ip='127.0.0.1'
  port=PORT
  ae_title="YourFancyAEtitle"
  input = {'argument_name' : MyInput }
  endpoints = [Address(ip='127.0.0.1', port=ENDPOINT_PORT, ae_title="PACS")]
  root_data_directory: str | Path = Path('DATA')
  log_path = Path('DATA') / 'log.txt'

  def process(self, input_data: Dict[str, Any]) -> Iterable[Dataset]:
    for dataset in input_data['argument_name']:
      dataset.SeriesDescription = "from the tutorial"
    return input_data['argument_name']


if __name__ == '__main__':
  MyPipeline()
"""

QUICK_FIX = """
from dicomflow.server.input import AbstractInput
from dicomflow.server.node import AbstractPipeline
from dicomflow.server.processor import AbstractProcessor
from dicomflow.lib.dimse import Address
from dicomflow.lib.utils import is_picklable

ATTRIBUTE = "quick fix"

class CT(AbstractInput):
  required_tags = [0x00080018]

class Pipeline(AbstractPipeline):
  port = PORT
  root_data_directory = 'DATA'
  input = {'ct': CT}
  endpoints = [Address(ip='127.0.0.1', port=ENDPOINT_PORT, ae_title="PACS")]

  class Processor(AbstractProcessor): # Very import to name it Processor!
    def process(self, input_container):
      datasets = list(input_container['ct'])
      for dataset in datasets:
        dataset.SeriesDescription = ATTRIBUTE
      return datasets

assert is_picklable(ATTRIBUTE) and not is_picklable(lambda: None)

if __name__ == '__main__':
  Pipeline().open()
"""


def run_example(
    source: str, tmp_path: Path, storescp: StoreSCPPeer, count: int, ae_title: str = "DICOMFLOW"
) -> list[Path]:
    port, data = free_port(), tmp_path / "data"
    code = source.replace("ENDPOINT_PORT", str(storescp.port)).replace("PORT", str(port))
    script = tmp_path / "my_pipeline.py"
    script.write_text(textwrap.dedent(code).replace("'DATA'", repr(str(data))))
    node = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path)
    try:
        wait_for_port(port)
        storescu(port, write_series(make_ct_series(count), tmp_path / "series"), aec=ae_title)
        wait_for(lambda: len(storescp.files()) == count, 60, "the example's results")
    finally:
        node.send_signal(signal.SIGINT)
        assert node.wait(timeout=30) == 0
    return storescp.files()


def test_create_a_pipeline_tutorial_runs(tmp_path: Path, storescp: StoreSCPPeer):
    results = run_example(TUTORIAL, tmp_path, storescp, 3, "YourFancyAEtitle")
    assert {pydicom.dcmread(p).SeriesDescription for p in results} == {"from the tutorial"}
    assert (tmp_path / "data" / "log.txt").stat().st_size > 0


def test_processor_quick_fix_runs(tmp_path: Path, storescp: StoreSCPPeer):
    results = run_example(QUICK_FIX, tmp_path, storescp, 2)
    assert {pydicom.dcmread(p).SeriesDescription for p in results} == {"quick fix"}


def test_placeholder_endpoint_gives_a_clear_error(tmp_path: Path):
    script = tmp_path / "placeholder.py"
    script.write_text(
        textwrap.dedent(TUTORIAL)
        .replace(
            "Address(ip='127.0.0.1', port=ENDPOINT_PORT, ae_title=\"PACS\")",
            "Address(ip='', port=104, ae_title=\"\")",
        )
        .replace("PORT", "0")
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert 'MyPipeline.endpoints[0]: Address ip "" is empty' in result.stderr
