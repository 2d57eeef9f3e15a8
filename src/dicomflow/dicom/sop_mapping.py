"""Attributes an instance of a SOP class must hold, per IOD module (PS3.3).

Each ``<Module>_required_tags`` list holds the Type 1 and Type 2 attributes of
one module that a pipeline usually relies on; ``<SOPClass>_required_tags``
joins the modules of the class's IOD (each tag once, in module order), ready
to be an input's ``required_tags``. :data:`required_tags` maps SOP Class UIDs
to those lists.
"""

from pydicom.datadict import tag_for_keyword
from pydicom.uid import (
    UID,
    CTImageStorage,
    EncapsulatedPDFStorage,
    MRImageStorage,
    NuclearMedicineImageStorage,
    PositronEmissionTomographyImageStorage,
)

_PIXEL_DEPTH = ("BitsAllocated", "BitsStored", "HighBit")


def _tags(*keywords: str) -> list[int]:
    tags = [tag_for_keyword(keyword) for keyword in keywords]
    return [tag for tag in tags if tag is not None]


def _join(*modules: list[int]) -> list[int]:
    """The tags of ``modules``, each once, in order."""
    return list(dict.fromkeys(tag for module in modules for tag in module))


CT_Image_required_tags = _tags(
    "ImageType", "KVP", *_PIXEL_DEPTH, "RescaleIntercept", "RescaleSlope"
)
Encapsulated_Document_required_tags = _tags(
    "ContentDate", "AcquisitionDateTime", "ContentTime", "InstanceNumber"
)
Encapsulated_Document_Series_required_tags = _tags(
    "Modality",
    "SeriesInstanceUID",
    "SeriesNumber",
    "BurnedInAnnotation",
    "DocumentTitle",
    "EncapsulatedDocument",
    "MIMETypeOfEncapsulatedDocument",
)
Frame_of_Reference_required_tags = _tags("FrameOfReferenceUID", "PositionReferenceIndicator")
General_Study_required_tags = _tags(
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyInstanceUID",
    "StudyID",
)
General_Series_required_tags = _tags("Modality", "SeriesInstanceUID", "SeriesNumber")
General_Equipment_required_tags = _tags("Manufacturer")
General_Image_required_tags = _tags("InstanceNumber")
CR_Series = _tags("BodyPartExamined", "ViewPosition")
Image_Plane_required_tags = _tags(
    "SliceThickness", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"
)
Image_Pixel_required_tags = _tags(
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    *_PIXEL_DEPTH,
    "PixelRepresentation",
    "PixelData",
)
MR_Image_required_tags = _tags(
    "ImageType",
    "ScanningSequence",
    "SequenceVariant",
    "ScanOptions",
    "MRAcquisitionType",
    "EchoTime",
    *_PIXEL_DEPTH,
)
MultiFrame_required_tags = _tags("NumberOfFrames", "FrameIncrementPointer")
NM_Detector_required_tags = _tags("DetectorInformationSequence")
NM_Image_Pixel_required_tags = _tags(
    "SamplesPerPixel", "PhotometricInterpretation", "PixelSpacing", *_PIXEL_DEPTH
)
NM_Multi_Frame_required_tags = _tags(
    "FrameIncrementPointer", "NumberOfEnergyWindows", "NumberOfDetectors"
)
NM_Image_required_tags = _tags("ImageType")
NM_Isotope_required_tags = _tags(
    "EnergyWindowInformationSequence", "RadiopharmaceuticalInformationSequence"
)
NM_PET_Patient_Orientation_required_tags = _tags(
    "PatientOrientationCodeSequence", "PatientGantryRelationshipCodeSequence"
)
RT_Image_required_tags = _tags(
    "ImageType",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    *_PIXEL_DEPTH,
    "PixelRepresentation",
    "RTImageLabel",
    "XRayImageReceptorAngle",
    "ImagePlanePixelSpacing",
    "RTImagePosition",
    "RadiationMachineName",
    "RadiationMachineSAD",
    "RTImageSID",
    "PrimaryDosimeterUnit",
)
RT_image = _join(_tags("ConversionType", "RTImagePlane"), RT_Image_required_tags)
RT_Series_required_tags = _tags("Modality", "SeriesInstanceUID", "SeriesNumber")
SC_Equipment_required_tags = _tags("ConversionType")
SOP_Common_required_tags = _tags("SOPClassUID", "SOPInstanceUID")
Patient_required_tags = _tags("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
PET_Series_required_tags = _tags(
    "SeriesDate",
    "SeriesTime",
    "CollimatorType",
    "CorrectedImage",
    "NumberOfSlices",
    "SeriesType",
    "Units",
    "CountsSource",
    "DecayCorrection",
)
PET_Isotope_required_tags = _tags("RadiopharmaceuticalInformationSequence")
PET_Image_required_tags = _tags(
    "ImageType",
    "AcquisitionDate",
    "AcquisitionTime",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    *_PIXEL_DEPTH,
    "RescaleIntercept",
    "RescaleSlope",
    "FrameReferenceTime",
    "ImageIndex",
)

_IMAGE_COMMON = (
    Patient_required_tags,
    General_Study_required_tags,
    General_Series_required_tags,
)

CTImageStorage_required_tags = _join(
    *_IMAGE_COMMON,
    Frame_of_Reference_required_tags,
    General_Equipment_required_tags,
    General_Image_required_tags,
    Image_Plane_required_tags,
    Image_Pixel_required_tags,
    CT_Image_required_tags,
    SOP_Common_required_tags,
)
EncapsulatedPDFStorage_required_tags = _join(
    Patient_required_tags,
    General_Series_required_tags,
    Encapsulated_Document_Series_required_tags,
    General_Equipment_required_tags,
    SC_Equipment_required_tags,
    Encapsulated_Document_required_tags,
    SOP_Common_required_tags,
)
MRImageStorage_required_tags = _join(
    *_IMAGE_COMMON,
    Frame_of_Reference_required_tags,
    General_Equipment_required_tags,
    General_Image_required_tags,
    Image_Plane_required_tags,
    Image_Pixel_required_tags,
    MR_Image_required_tags,
    SOP_Common_required_tags,
)
NuclearMedicineImageStorage_required_tags = _join(
    *_IMAGE_COMMON,
    NM_PET_Patient_Orientation_required_tags,
    Frame_of_Reference_required_tags,
    General_Equipment_required_tags,
    General_Image_required_tags,
    Image_Pixel_required_tags,
    NM_Image_Pixel_required_tags,
    MultiFrame_required_tags,
    NM_Image_required_tags,
    NM_Isotope_required_tags,
    NM_Detector_required_tags,
    SOP_Common_required_tags,
)
PositronEmissionTomographyImageStorage_required_tags = _join(
    *_IMAGE_COMMON,
    PET_Series_required_tags,
    PET_Isotope_required_tags,
    NM_PET_Patient_Orientation_required_tags,
    Frame_of_Reference_required_tags,
    General_Equipment_required_tags,
    General_Image_required_tags,
    Image_Plane_required_tags,
    Image_Pixel_required_tags,
    PET_Image_required_tags,
    SOP_Common_required_tags,
)
DICOM_RT_Image_required_tags = _join(
    Patient_required_tags,
    General_Study_required_tags,
    RT_Series_required_tags,
    General_Equipment_required_tags,
    General_Image_required_tags,
    Image_Pixel_required_tags,
    RT_image,
    SOP_Common_required_tags,
)

required_tags: dict[UID, list[int]] = {
    CTImageStorage: CTImageStorage_required_tags,
    EncapsulatedPDFStorage: EncapsulatedPDFStorage_required_tags,
    MRImageStorage: MRImageStorage_required_tags,
    NuclearMedicineImageStorage: NuclearMedicineImageStorage_required_tags,
    PositronEmissionTomographyImageStorage: PositronEmissionTomographyImageStorage_required_tags,
}
