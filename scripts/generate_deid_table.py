"""Regenerate ``src/dicomflow/dicom/deid/table_e1_1.json`` from the DICOM standard.

The input is ``standard/confidentiality_profile_attributes.json`` of the MIT-licensed
innolitics/dicom-standard project, which parses PS3.15 Table E.1-1 out of the standard's
own DocBook (edition 2024e at the time of writing). The output keeps, per attribute, its
tag (``GGGGEEEE``, ``x`` for a repeating digit), its name, the Basic Profile action and the
action of each option column, so that the profile follows the standard rather than a list
typed by hand::

    python scripts/generate_deid_table.py confidentiality_profile_attributes.json 2024e
"""

import json
import sys
from pathlib import Path

OPTION_COLUMNS = {
    "rtnSafePrivOpt": "retain_safe_private",
    "rtnUIDsOpt": "retain_uids",
    "rtnDevIdOpt": "retain_device_identity",
    "rtnInstIdOpt": "retain_institution_identity",
    "rtnPatCharsOpt": "retain_patient_characteristics",
    "rtnLongFullDatesOpt": "retain_longitudinal_full_dates",
    "rtnLongModifDatesOpt": "retain_longitudinal_modified_dates",
    "cleanDescOpt": "clean_descriptors",
    "cleanStructContOpt": "clean_structured_content",
    "cleanGraphOpt": "clean_graphics",
}
OUTPUT = Path(__file__).parents[1] / "src/dicomflow/dicom/deid/table_e1_1.json"


def main(source: str, edition: str) -> None:
    rows = []
    for row in json.loads(Path(source).read_text()):
        tag = row["tag"]
        if not tag.startswith("(") or "WHERE" in tag:
            continue  # private groups: handled by the private-attribute rule
        options = {name: row[column] for column, name in OPTION_COLUMNS.items() if column in row}
        rows.append([(tag[1:5] + tag[6:10]).lower(), row["name"], row["basicProfile"], options])
    rows.sort()
    lines = ",\n".join(json.dumps(row) for row in rows)
    header = json.dumps({"edition": edition, "table": "PS3.15 Table E.1-1"})[:-1]
    OUTPUT.write_text(f'{header}, "attributes": [\n{lines}\n]}}\n')
    print(f"{len(rows)} attributes written to {OUTPUT}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
