"""Exceptions raised by dicomflow.

Every exception derives from :class:`DicomflowError`; each subclass also
inherits the built-in exception that matches its meaning, so callers can catch
either.
"""


class DicomflowError(Exception):
    """Base class of every dicomflow error."""


class InvalidKeyError(DicomflowError, ValueError):
    """A DICOM value cannot be turned into a safe on-disk key."""


class PipelineDefinitionError(DicomflowError, TypeError):
    """A pipeline or input class is declared wrongly."""


class PipelineLoadError(DicomflowError, ImportError):
    """A pipeline file cannot be loaded."""


class SpoolError(DicomflowError, OSError):
    """An instance could not be stored durably in the spool."""


class ProcessingError(DicomflowError, RuntimeError):
    """Processing of a round failed (exception, crash or timeout)."""


class ExportError(DicomflowError, ConnectionError):
    """Results could not be delivered to an endpoint."""


class TranscodeError(DicomflowError, ValueError):
    """An instance's pixel data cannot be decoded for a peer that takes only uncompressed
    transfer syntaxes."""


class PeerUnreachableError(DicomflowError, ConnectionError):
    """A DICOM peer refused or did not answer an association."""


class AssociationLost(DicomflowError, ConnectionError):
    """A DICOM association ended before the exchange on it did."""


class CancelIgnoredError(AssociationLost):
    """A peer went on answering a query after our C-CANCEL-RQ."""


class ProtocolError(DicomflowError, ValueError):
    """A DICOM peer broke the upper-layer or DIMSE protocol: the association is aborted."""


class PortInUseError(DicomflowError, OSError):
    """The node's listening port is already taken."""


class DataDirectoryInUseError(DicomflowError, OSError):
    """Another node runs on the same data directory."""


class QueueError(DicomflowError, RuntimeError):
    """The job queue cannot do what was asked."""


class UnknownDependencyError(QueueError, KeyError):
    """A job depends on a job the queue does not know."""


class PermanentJobError(DicomflowError):
    """Raised by a job's function for a failure that no retry can fix (the same input or
    settings would fail the same way): the queue records the job failed at once, whatever
    retries it has left, and its dependants are settled as for any final failure. Mixed
    into the errors that mean it (``class RefusedError(PermanentJobError, ValueError)``)."""


class LandlockUnavailable(DicomflowError, OSError):
    """The kernel cannot restrict this process with Landlock."""


class JobTimeoutError(DicomflowError, TimeoutError):
    """A job ran longer than its timeout and was killed."""


class ServiceDefinitionError(DicomflowError, ValueError):
    """A registry service's settings.json or callback module is wrong."""


class LockAcquisitionError(DicomflowError, RuntimeError):
    """A series lock could not be acquired, re-acquired or is no longer ours."""


class CODError(DicomflowError, RuntimeError):
    """A Cloud Optimized DICOM series was used in a way its state forbids."""


class CODInstanceError(DicomflowError, ValueError):
    """An instance cannot be added to a COD series (bad UID, wrong series, hint mismatch)."""


class CODIntegrityError(DicomflowError, OSError):
    """Bytes read from a COD datastore do not match their recorded size or crc32c."""


class CODNotFoundError(DicomflowError, KeyError):
    """A COD series does not hold the requested instance."""


class CatalogError(DicomflowError, RuntimeError):
    """The archive's catalog cannot be opened, read or updated (bad location, server
    unreachable, database error); the message names the ``catalog`` setting."""


class InstanceTooLargeError(DicomflowError, ValueError):
    """An instance, as received or once decoded, is larger than a limit allows.

    ``setting`` names the limit (``maximum_instance_bytes`` or ``maximum_held_bytes``).
    """

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


class TruncatedDatasetError(DicomflowError, ValueError):
    """An encoded dataset ends in the middle of a data element."""


class InstanceRefusedError(DicomflowError, ValueError):
    """A received instance is refused: it is not stored, and its C-STORE fails."""


class SOPClassNotSupportedError(InstanceRefusedError):
    """A C-STORE names a SOP class that its presentation context was not negotiated for."""


class DatasetMismatchError(InstanceRefusedError):
    """A C-STORE's dataset contradicts its command set, or its own attributes."""


class NotArchivableError(DatasetMismatchError):
    """An archiving node cannot file the instance (no valid Study or Series Instance UID)."""


class UnreadableInstanceError(InstanceRefusedError):
    """A C-STORE's command set or dataset cannot be decoded."""


class TLSConfigurationError(DicomflowError, ValueError):
    """A TLS certificate, private key or CA file cannot be used; the message names it."""


class SettingsFileError(DicomflowError, ValueError):
    """The TOML settings file named by ``DICOMFLOW_CONFIG`` is missing or unreadable."""


class UserIdentitiesFileError(SettingsFileError):
    """The user identities file (``user_identities_file``) is missing or malformed."""


# The pipeline library's exception names (re-exported by dicomflow.lib.exceptions).


class IncorrectlyConfigured(PipelineDefinitionError):
    """A pipeline attempted to start while configured incorrectly."""


class CouldNotCompleteDIMSEMessage(ExportError):
    """A DIMSE message was unsuccessful."""


class InvalidRootDataDirectory(DicomflowError, ValueError):
    """The root data directory is not a usable directory."""


class InvalidTagType(DicomflowError, TypeError):
    """A tag of an unsupported type was given."""


class MissingModule(DicomflowError, ImportError):
    """A module is missing."""


class MissingPivotDataset(DicomflowError, ValueError):
    """An iterable assumed to hold at least one dataset holds none."""


class InvalidEncoding(DicomflowError, ValueError):
    """A data structure has an unexpected encoding."""


class InvalidTreeNode(DicomflowError, TypeError):
    """An image tree holds a value of an unexpected type."""


class InvalidLatexCompiler(DicomflowError, RuntimeError):
    """A LaTeX compiler that should be available is not."""


class InvalidFont(DicomflowError, ValueError):
    """A font is neither an OTF nor a TTF font."""


class InvalidPynetdicomEvent(DicomflowError, TypeError):
    """A network event is of an unexpected type."""


class MissingNiftiImage(DicomflowError, ValueError):
    """A NIfTI image holds no image."""


class MissingOptionalDependency(DicomflowError, ImportError):
    """An optional dependency is not installed."""


class MissingDatasets(DicomflowError, ValueError):
    """A container expected to hold datasets holds none."""


class NonReducedBasis(DicomflowError, ValueError):
    """A basis has no dominant vector per axis."""


class DimensionalityError(DicomflowError, ValueError):
    """An object does not have the expected number of dimensions."""


class ContractViolation(DicomflowError, RuntimeError):
    """Something that cannot happen happened."""


class GPUError(DicomflowError, RuntimeError):
    """The GPU reported an error."""


class BlueprintConstructionFailure(DicomflowError, ValueError):
    """A blueprint was given an element it cannot hold (a reserved private tag, a non-element)."""


class ConstructionFailure(DicomflowError, ValueError):
    """A factory cannot build a dataset or series from its blueprint and inputs."""


class InvalidDataset(DicomflowError, ValueError):
    """A dataset lacks what an operation on it requires, or does not fit where it was added."""


class InvalidQueryDataset(InvalidDataset):
    """A query dataset is not valid for the DIMSE message it is sent with."""


class UnknownQueryLevelError(InvalidQueryDataset):
    """A query's QueryRetrieveLevel is missing or not a level of its information model."""


class UnencodableAnswer(DicomflowError):
    """A C-FIND answer holds a value the node's own encoder does not write (pydicom
    encodes that answer instead)."""


class UnknownMoveDestinationError(DicomflowError, KeyError):
    """A C-MOVE names a destination AE title the node does not know."""


class QueryKeyError(DicomflowError, ValueError):
    """A query key or paging parameter (QIDO-RS or C-FIND) names no attribute or has a
    value that cannot be matched; the message names it."""


class QueryRetrieveStatusError(DicomflowError, RuntimeError):
    """A peer answered a C-FIND, C-MOVE or C-GET with a failure status; the message
    names the status. ``status`` holds its code."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# The archive library's exception names (re-exported by dicomflow.cod.errors).


class LockVerificationError(LockAcquisitionError):
    """The series lock is missing or holds another writer's generation."""


class LockUnspecifiedError(CODError, TypeError):
    """A CODObject was created without choosing ``lock=True`` or ``lock=False``."""


class CleanOpOnUnlockedCODObjectError(CODError):
    """An operation that writes to the datastore was asked of an unlocked CODObject."""


class CODObjectNotFoundError(CODError):
    """The series has no metadata in the datastore and ``create_if_missing=False``."""


class ErrorLogExistsError(CODError):
    """The series has an ``error.log``: it needs attention before anyone writes to it."""


class HintMismatchError(CODInstanceError, AssertionError):
    """A hint (size, crc32c or a UID) contradicts the instance's file."""


class MultipartError(DicomflowError, ValueError):
    """A multipart body cannot be split into parts."""


class ArchiveError(DicomflowError, RuntimeError):
    """Some instances of a series could not be archived."""


class ArchiveRefusedError(ArchiveError, PermanentJobError):
    """Instances of a series were refused by de-identification (the others are archived):
    the same instances would be refused again, so the archive job is not retried."""


class FactoryError(DicomflowError, ValueError):
    """A synthetic dataset was requested with impossible parameters."""


class GrinderError(DicomflowError, ValueError):
    """The instances of an input cannot be ground into the requested form."""


class QueryRetrieveRefused(DicomflowError):
    """A C-FIND, C-GET or C-MOVE request is answered with the failure ``status`` (the
    message says why)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class OperationCancelled(DicomflowError):
    """The peer sent a C-CANCEL-RQ for the operation under way."""


class DeidError(DicomflowError, ValueError):
    """An instance could not be de-identified."""


class DeidConfigError(DeidError, SettingsFileError, PermanentJobError):
    """De-identification is configured wrongly (profile, option, key file, table); the
    message names the setting."""


class DeidRefusedError(DeidError, PermanentJobError):
    """An instance may carry identifying pixels (burned-in annotation) and no
    pixel-cleaning rule is configured for it."""
