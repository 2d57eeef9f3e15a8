"""dicomflow: a DICOM processing node.

Receive images over DICOM networking, decide when a patient's inputs are
complete, run processing in isolated workers and send the results on.
"""

__version__ = "0.1.0"
