"""Worker of the "measure" job: counts voxels above the threshold, writes a JSON report."""

import json
from pathlib import Path

import numpy as np
from pydicom import dcmread


def run(jobName, headers, params, added_params, input_dir, output_dir, **kwargs):
    threshold = added_params[jobName]["threshold"]
    count = 0
    for path in sorted(Path(input_dir).glob("*.dcm")):
        ct = dcmread(path)
        hu = ct.pixel_array * float(ct.RescaleSlope) + float(ct.RescaleIntercept)
        count += int(np.count_nonzero(hu > threshold))
    report = {"series": headers["SeriesInstanceUID"], "bone_voxels": count}
    (Path(output_dir) / "report.json").write_text(json.dumps(report))
    print(f"{count} bone voxels above {threshold} HU")
