"""What each modality's synthetic objects are (:mod:`lab.dicom.data.generate` writes them): the
shape of the objects (matrix, bit depth, frames, count) and the attributes of the modules that
their IODs add to the common ones (PS3.3 Annex A and the modules of C.7 and C.8).

The module functions set attributes, never pixels: one is called per object with the object's
number, which is what varies the view (chest pair, the four mammography screening views) or the
slice position (CT, MR) along a series.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom import uid as uids
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence


@dataclass(frozen=True)
class Profile:
    """The shape of one modality's objects, chosen to match real studies' sizes.

    Typical uncompressed sizes (what a 2007 teleradiology link had to carry): CT 512x512 16-bit,
    about 0.5 MB per slice and 100 slices; MR 256x256 16-bit, 60 images; CR 2500x2048 16-bit,
    about 10 MB, 2 views; DX 3000x2500 16-bit, about 15 MB, 2 views; MG 4096x3328 16-bit, about
    26 MiB, the 4 screening views; US a multi-frame 640x480 8-bit RGB cine loop of 30 frames,
    about 27 MB, 2 loops; NM 128x128 16-bit, a 64-frame dynamic acquisition, 2 MB, 2 objects.
    ``frames`` is per object, ``objects`` the default count per study.
    """

    modality: str
    sop_class_uid: str
    rows: int
    columns: int
    bits_allocated: int = 16
    bits_stored: int = 12
    samples_per_pixel: int = 1
    photometric: str = "MONOCHROME2"
    frames: int = 1
    objects: int = 2

    @property
    def object_bytes(self) -> int:
        """Pixel Data bytes of one object (PS3.5 §8.1.1, native encoding)."""
        samples = self.rows * self.columns * self.samples_per_pixel * self.frames
        return samples * self.bits_allocated // 8

    @property
    def study_bytes(self) -> int:
        """Pixel Data bytes of a default study."""
        return self.object_bytes * self.objects


PROFILES: dict[str, Profile] = {
    "CT": Profile("CT", uids.CTImageStorage, 512, 512, objects=100),
    "MR": Profile("MR", uids.MRImageStorage, 256, 256, objects=60),
    "CR": Profile("CR", uids.ComputedRadiographyImageStorage, 2500, 2048),
    "DX": Profile("DX", uids.DigitalXRayImageStorageForPresentation, 3000, 2500, bits_stored=14),
    "MG": Profile("MG", uids.DigitalMammographyXRayImageStorageForPresentation, 4096, 3328,
                  bits_stored=14, objects=4),
    "US": Profile("US", uids.UltrasoundMultiFrameImageStorage, 480, 640, bits_allocated=8,
                  bits_stored=8, samples_per_pixel=3, photometric="RGB", frames=30),
    "NM": Profile("NM", uids.NuclearMedicineImageStorage, 128, 128, bits_stored=16, frames=64),
}  # fmt: skip


# --- modality modules ----------------------------------------------------------------------

#: IODs whose Frame of Reference module is mandatory (CT, MR: PS3.3 A.3, A.4) or user-optional
#: and cheap (NM: A.5).
WITH_FRAME_OF_REFERENCE = frozenset({"CT", "MR", "NM"})
_CHEST = ("51185008", "SCT", "Chest")
_BREAST_CODE = ("76752008", "SCT", "Breast")
#: Chest views (View Position, Patient Orientation, view code of CID 4010).
_CHEST_VIEWS = (("PA", ["L", "F"], ("399348003", "SCT", "postero-anterior")),
                ("LL", ["A", "F"], ("399173006", "SCT", "left lateral")))  # fmt: skip
#: The four screening views (laterality, Patient Orientation, view code of CID 4014), with
#: orientations as PS3.3 C.8.11.7.1.1 requires for CC and MLO views.
_MG_VIEWS = (("R", ["P", "L"], ("399162004", "SCT", "cranio-caudal")),
             ("L", ["A", "R"], ("399162004", "SCT", "cranio-caudal")),
             ("R", ["P", "F"], ("399368009", "SCT", "medio-lateral oblique")),
             ("L", ["A", "F"], ("399368009", "SCT", "medio-lateral oblique")))  # fmt: skip


def _item(**attributes: Any) -> Dataset:
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return item


def _sequence(**attributes: Any) -> Sequence:
    """A sequence of one item."""
    return Sequence([_item(**attributes)])


def _code(code: tuple[str, str, str]) -> Dataset:
    """A Code Sequence item (PS3.3 Table 8.8-1)."""
    return _item(CodeValue=code[0], CodingSchemeDesignator=code[1], CodeMeaning=code[2])


def _image_plane(ds: Dataset, profile: Profile, index: int, pixel: float, step: float) -> None:
    """Image Plane module (PS3.3 C.7.6.2): axial slices, head first supine, centred."""
    ds.PatientPosition = "HFS"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PixelSpacing = [pixel, pixel]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    z = -(index - 1) * step
    ds.ImagePositionPatient = [-profile.columns * pixel / 2, -profile.rows * pixel / 2, z]
    ds.SliceLocation = z
    ds.AcquisitionNumber = 1


def _ct(ds: Dataset, profile: Profile, index: int) -> None:
    """CT Image module (PS3.3 C.8.2.1): stored value minus 1024 is the Hounsfield unit."""
    _image_plane(ds, profile, index, pixel=0.703125, step=2.5)
    ds.SliceThickness = 2.5
    ds.BodyPartExamined = "ABDOMEN"
    ds.KVP = 120
    ds.ConvolutionKernel = "STANDARD"
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400


def _mr(ds: Dataset, profile: Profile, index: int) -> None:
    """MR Image module (PS3.3 C.8.3.1): a 1.5 T spin-echo T1 head series."""
    _image_plane(ds, profile, index, pixel=0.9375, step=6.0)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.SliceThickness = 5
    ds.SpacingBetweenSlices = 6
    ds.BodyPartExamined = "HEAD"
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime = 500
    ds.EchoTime = 15
    ds.EchoTrainLength = 1
    ds.ImagedNucleus = "1H"
    ds.MagneticFieldStrength = 1.5


def _projection(ds: Dataset, spacing: float, orientation: list[str]) -> None:
    """What every projection radiograph carries (PS3.3 C.7.6.1.1.1 for the orientation)."""
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PatientOrientation = orientation
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.KVP = 125


def _chest(ds: Dataset, spacing: float, index: int) -> None:
    """A PA chest, then a left lateral: the usual pair of chest views."""
    view, orientation, _ = _CHEST_VIEWS[(index - 1) % len(_CHEST_VIEWS)]
    _projection(ds, spacing, orientation)
    ds.ViewPosition = view
    ds.BodyPartExamined = "CHEST"


def _cr(ds: Dataset, profile: Profile, index: int) -> None:
    """CR Series and CR Image modules (PS3.3 C.8.1.1, C.8.1.2): PA chests. View Position is a
    series attribute in CR, so every object of the one series has the same view."""
    _chest(ds, 0.168, 1)


def _dx(ds: Dataset, profile: Profile, index: int) -> None:
    """DX Series, DX Anatomy Imaged, DX Image, DX Detector, VOI LUT and Acquisition Context
    modules (PS3.3 C.8.11.1-4, C.11.2, C.7.6.14), for presentation."""
    _chest(ds, 0.139, index)
    _for_presentation(ds, profile)
    ds.ImageLaterality = "U"
    ds.AnatomicRegionSequence = Sequence([_code(_CHEST)])
    ds.ViewCodeSequence = Sequence([_code(_CHEST_VIEWS[(index - 1) % len(_CHEST_VIEWS)][2])])
    ds.ViewCodeSequence[0].ViewModifierCodeSequence = Sequence()
    ds.PositionerType = "COLUMN"
    ds.DetectorType = "SCINTILLATOR"


def _for_presentation(ds: Dataset, profile: Profile) -> None:
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    ds.WindowCenter = 1 << (profile.bits_stored - 1)
    ds.WindowWidth = 1 << profile.bits_stored
    ds.AcquisitionContextSequence = Sequence()


def _mg(ds: Dataset, profile: Profile, index: int) -> None:
    """Mammography Series and Image modules (PS3.3 C.8.11.6, C.8.11.7) on the DX modules:
    the four screening views in turn (R CC, L CC, R MLO, L MLO)."""
    laterality, orientation, code = _MG_VIEWS[(index - 1) % len(_MG_VIEWS)]
    _projection(ds, 0.07, orientation)
    _for_presentation(ds, profile)
    ds.BodyPartExamined = "BREAST"
    ds.OrganExposed = "BREAST"
    ds.ImageLaterality = laterality
    ds.AnatomicRegionSequence = Sequence([_code(_BREAST_CODE)])
    ds.ViewCodeSequence = Sequence([_code(code)])
    ds.ViewCodeSequence[0].ViewModifierCodeSequence = Sequence()
    ds.PositionerType = "MAMMOGRAPHIC"
    ds.DetectorType = "DIRECT"
    ds.KVP = 29
    ds.BreastImplantPresent = "NO"


def _us(ds: Dataset, profile: Profile, index: int) -> None:
    """US Image, Cine and Multi-frame modules (PS3.3 C.8.5.6, C.7.6.5, C.7.6.6): a 30 frame/s
    loop whose frames are indexed by Frame Time."""
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL", "0001"]
    ds.PatientOrientation = ""
    ds.BodyPartExamined = "ABDOMEN"
    ds.LossyImageCompression = "00"
    ds.FrameTime = 33.3
    ds.CineRate = 30
    ds.FrameIncrementPointer = 0x00181063  # (0018,1063) Frame Time


def _nm(ds: Dataset, profile: Profile, index: int) -> None:
    """NM Image, NM Multi-frame, NM Phase, NM Isotope, NM Detector and NM/PET Patient
    Orientation modules (PS3.3 C.8.4.6-11, C.8.4.14): a one-phase dynamic renogram, one
    detector, one Tc-99m energy window, 10 s frames."""
    frames = profile.frames
    ds.ImageType = ["ORIGINAL", "PRIMARY", "DYNAMIC", "EMISSION"]
    ds.PatientOrientation = ""
    ds.BodyPartExamined = "ABDOMEN"  # both kidneys: an unpaired region, so no Laterality
    ds.CountsAccumulated = ""
    ds.PixelSpacing = [4.42, 4.42]
    ds.FrameIncrementPointer = [0x00540010, 0x00540020, 0x00540030, 0x00540100]
    ds.NumberOfEnergyWindows = 1
    ds.EnergyWindowVector = [1] * frames
    ds.NumberOfDetectors = 1
    ds.DetectorVector = [1] * frames
    ds.NumberOfPhases = 1
    ds.PhaseVector = [1] * frames
    ds.TimeSliceVector = list(range(1, frames + 1))
    ds.PhaseInformationSequence = _sequence(
        PhaseDelay=0, ActualFrameDuration=10000, PauseBetweenFrames=0, NumberOfFramesInPhase=frames
    )
    window = _sequence(EnergyWindowLowerLimit=126, EnergyWindowUpperLimit=154)
    ds.EnergyWindowInformationSequence = _sequence(
        EnergyWindowRangeSequence=window, EnergyWindowName="TC99M"
    )
    ds.RadiopharmaceuticalInformationSequence = Sequence()
    ds.DetectorInformationSequence = _sequence(  # a posterior view of a supine patient
        CollimatorType="PARA",
        FocalDistance="",
        ImageOrientationPatient=[-1, 0, 0, 0, 0, -1],
        ImagePositionPatient="",
    )
    ds.PatientOrientationCodeSequence = Sequence()
    ds.PatientGantryRelationshipCodeSequence = Sequence()


#: The modality-specific modules of each modality's IOD, set on one object.
MODULES: dict[str, Callable[[Dataset, Profile, int], None]] = {
    "CT": _ct, "MR": _mr, "CR": _cr, "DX": _dx, "MG": _mg, "US": _us, "NM": _nm,
}
