"""Digital signature profiles and MAC algorithms as data (PS3.15 Annex C, PS3.3 C.12.1.1.3).

A profile says which attributes a signature must cover when they are present in the object:

- Base RSA (PS3.15 C.2) names none: it fixes only the algorithms (an RSA key, a certificate of
  type ``X509_1993_SIG``, RSASSA-PKCS1-v1_5 over a MAC of the listed MAC algorithms).
- Creator RSA (PS3.15 C.3): the SOP Class and Instance UIDs, the SOP Instance creation date and
  time, the Study and Series Instance UIDs, and every attribute present of the General Equipment,
  Overlay Plane, Curve, Graphic Annotation, General Image, Image Pixel, SR Document General,
  SR Document Content, Waveform, Waveform Annotation, Multi-frame Functional Groups and
  Encapsulated Document modules (PS3.3 C.7, C.9, C.10, C.17, C.24).
- Authorization RSA (PS3.15 C.4): the same without the creation date and time and the
  equipment, plus every attribute whose value the technician or physician who authorizes the
  object can check (shown to them): which those are the caller says, through ``tags``.

Of the modality-specific enhanced modules the standard adds to the Creator and Authorization
lists (Enhanced MR/CT/XA/PET/US Image, MR Spectroscopy, Raw Data, Segmentation, ...) only the
attributes classic images share with them are listed (``_ENHANCED_SHARED``), enough that DCMTK's
``dcmsign --verify +rc/+ru`` accepts the lab's narrowed signatures of every generated modality.

By default :func:`lab.dicom.data.dsig.sign` signs every signable attribute of the object, which
covers every profile; the lists matter when a caller narrows the signed set to chosen ``tags``,
and when :func:`lab.dicom.data.dsig.verify` reports which profiles a signature satisfies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag

#: The MAC Calculation Transfer Syntax of objects whose own syntax is not explicit VR little
#: endian (PS3.5 A.2); PS3.3 C.12.1.1.3 allows only explicit VR little endian syntaxes.
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
#: Certificate Type (0400,0110) of an X.509 signing certificate (PS3.3 C.12.1.1.3, PS3.15 C.2).
CERTIFICATE_TYPE = "X509_1993_SIG"

#: MAC Algorithm (0400,0015) defined terms (PS3.3 C.12.1.1.3) the lab signs with, as
#: ``cryptography`` hashes. RIPEMD160 (DCMTK's default) is absent: ``cryptography`` has no
#: RIPEMD-160. MD5 is only verified, never used to sign (PS3.15 C.2 allows it; it is broken).
SIGNING_MACS: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA1": hashes.SHA1,
    "SHA256": hashes.SHA256,
    "SHA384": hashes.SHA384,
    "SHA512": hashes.SHA512,
}
VERIFYING_MACS: dict[str, type[hashes.HashAlgorithm]] = {**SIGNING_MACS, "MD5": hashes.MD5}

_IDENTITY = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
_CREATION = ("InstanceCreationDate", "InstanceCreationTime")
_GENERAL_EQUIPMENT = (
    "Manufacturer", "InstitutionName", "InstitutionAddress", "StationName",
    "InstitutionalDepartmentName", "InstitutionalDepartmentTypeCodeSequence",
    "ManufacturerModelName", "DeviceSerialNumber", "SoftwareVersions", "GantryID",
    "UDISequence", "DeviceUID", "SpatialResolution", "DateOfLastCalibration",
    "TimeOfLastCalibration", "PixelPaddingValue",
)
_GRAPHIC_ANNOTATION = ("GraphicAnnotationSequence",)
_GENERAL_IMAGE = (
    "InstanceNumber", "PatientOrientation", "ContentDate", "ContentTime", "ImageType",
    "AcquisitionNumber", "AcquisitionDate", "AcquisitionTime", "AcquisitionDateTime",
    "ImagesInAcquisition", "ImageComments", "QualityControlImage", "BurnedInAnnotation",
    "RecognizableVisualFeatures", "LossyImageCompression", "LossyImageCompressionRatio",
    "LossyImageCompressionMethod", "IconImageSequence", "PresentationLUTShape",
    "IrradiationEventUID", "RealWorldValueMappingSequence", "ImageLaterality",
    "AnatomicRegionSequence", "PrimaryAnatomicStructureSequence",
)
_IMAGE_PIXEL = (
    "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated",
    "BitsStored", "HighBit", "PixelRepresentation", "PlanarConfiguration", "PixelAspectRatio",
    "SmallestImagePixelValue", "LargestImagePixelValue",
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData", "ICCProfile",
    "ColorSpace", "PixelData", "PixelDataProviderURL", "PixelPaddingRangeLimit",
    "ExtendedOffsetTable", "ExtendedOffsetTableLengths",
)
_SR_DOCUMENT = (
    "PreliminaryFlag", "CompletionFlag", "CompletionFlagDescription", "VerificationFlag",
    "VerifyingObserverSequence", "AuthorObserverSequence", "ParticipantSequence",
    "CustodialOrganizationSequence", "PredecessorDocumentsSequence",
    "IdenticalDocumentsSequence", "ReferencedRequestSequence",
    "PerformedProcedureCodeSequence", "CurrentRequestedProcedureEvidenceSequence",
    "PertinentOtherEvidenceSequence", "ReferencedInstanceSequence", "ValueType",
    "ConceptNameCodeSequence", "ContinuityOfContent", "ContentTemplateSequence",
    "ObservationDateTime", "ObservationUID", "ContentSequence",
)
_WAVEFORM = (
    "WaveformSequence", "WaveformDataDisplayScale", "WaveformDisplayBackgroundCIELabValue",
    "WaveformPresentationGroupSequence", "WaveformAnnotationSequence",
)
_MULTI_FRAME = (
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence", "NumberOfFrames",
    "ConcatenationFrameOffsetNumber", "RepresentativeFrameNumber", "ConcatenationUID",
    "SOPInstanceUIDOfConcatenationSource", "InConcatenationNumber",
    "InConcatenationTotalNumber", "StereoPairsPresent",
)
_ENCAPSULATED_DOCUMENT = (
    "EncapsulatedDocument", "MIMETypeOfEncapsulatedDocument", "DocumentTitle",
)
#: Attributes of the enhanced modules the profiles also name (Enhanced MR, Enhanced XA/XRF,
#: Enhanced US and Enhanced Mammography Image, Implant Template: PS3.3 C.8.13.1, C.8.19.2,
#: C.8.24.1, C.8.31.1, C.29.1) that classic single-frame images carry as well.
_ENHANCED_SHARED = (
    "Manufacturer", "FrameOfReferenceUID", "KVP", "RescaleIntercept", "RescaleSlope",
    "MagneticFieldStrength", "ScanOptions", "ViewCodeSequence", "PositionerType",
    "PatientGantryRelationshipCodeSequence",
)
_CONTENT = (_ENHANCED_SHARED + _GRAPHIC_ANNOTATION + _GENERAL_IMAGE + _IMAGE_PIXEL
            + _SR_DOCUMENT + _WAVEFORM + _MULTI_FRAME + _ENCAPSULATED_DOCUMENT)

#: Element numbers of the repeating groups that the Overlay Plane (60xx, PS3.3 C.9.2) and the
#: retired Curve (50xx, PS3 2004 C.10.2) modules define; any even group 6000-601E / 5000-501E.
_OVERLAY_ELEMENTS = frozenset({0x0010, 0x0011, 0x0022, 0x0040, 0x0045, 0x0050, 0x0100, 0x0102,
                               0x1301, 0x1302, 0x1303, 0x1500, 0x3000})
_CURVE_ELEMENTS = frozenset({0x0005, 0x0010, 0x0022, 0x0030, 0x0040, 0x0103, 0x0104, 0x0105,
                             0x0106, 0x0110, 0x0112, 0x0114, 0x2500, 0x2600, 0x3000})


def _tags(keywords: Iterable[str]) -> frozenset[BaseTag]:
    tags = set()
    for keyword in keywords:
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise ValueError(f"{keyword} is not in pydicom's dictionary")
        tags.add(Tag(tag))
    return frozenset(tags)


@dataclass(frozen=True)
class Profile:
    """A digital signature profile of PS3.15 Annex C: its name, the section that defines it and
    the attributes it requires in Data Elements Signed when they are present."""

    name: str
    section: str
    required_if_present: frozenset[BaseTag]
    overlays_and_curves: bool

    def requires(self, tag: BaseTag) -> bool:
        """True when this profile requires ``tag`` to be signed if the object has it."""
        if tag in self.required_if_present:
            return True
        if not self.overlays_and_curves or tag.group % 2:
            return False
        if 0x6000 <= tag.group <= 0x601E:
            return tag.element in _OVERLAY_ELEMENTS
        return 0x5000 <= tag.group <= 0x501E and tag.element in _CURVE_ELEMENTS

    def required_in(self, ds: Dataset) -> list[BaseTag]:
        """The top-level tags of ``ds`` this profile requires a signature to cover."""
        return [Tag(tag) for tag in sorted(ds.keys()) if self.requires(Tag(tag))]


PROFILES: dict[str, Profile] = {
    "base-rsa": Profile("Base RSA", "PS3.15 C.2", frozenset(), overlays_and_curves=False),
    "creator-rsa": Profile("Creator RSA", "PS3.15 C.3",
                           _tags(_IDENTITY + _CREATION + _GENERAL_EQUIPMENT + _CONTENT),
                           overlays_and_curves=True),
    "authorization-rsa": Profile("Authorization RSA", "PS3.15 C.4", _tags(_IDENTITY + _CONTENT),
                                 overlays_and_curves=True),
}


def satisfied_profiles(ds: Dataset, signed: Iterable[BaseTag]) -> tuple[str, ...]:
    """The names of the profiles whose required attributes (those ``ds`` has) are all among
    ``signed``, so a verifier can say which profile a signature meets (PS3.15 C.3, C.4)."""
    covered = set(signed)
    return tuple(name for name, profile in PROFILES.items()
                 if set(profile.required_in(ds)) <= covered)
