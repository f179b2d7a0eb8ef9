"""Deterministic synthetic DICOM studies to transfer, and loading of a user's own folder.

The Zhang et al. (2007) testbed timed transfers of real multi-modality studies (CT, MR, CR, DX,
MG, US, NM). Real patient data cannot ship with the lab, so :func:`generate_study` writes studies
of the same shape: realistic matrix sizes, bit depths, frame and object counts, and valid IODs
(PS3.3 Annex A) that a real PACS and DCMTK accept. Every byte follows from (modality, seed,
objects, patient name): UIDs are name-based UUIDs of them (PS3.5 §9 and Annex B.2, "2.25."
UIDs), dates from the seed, pixels from a seeded generator, so a run can be repeated exactly and
a receiver's copy compared byte for byte. Files are PS3.10 Part-10 files in Explicit VR Little
Endian, uncompressed, so the bytes on the wire are the bytes on disk.

What each modality's objects are (sizes, and the modules of its IOD) is :mod:`lab.dicom.data.iods`;
this module makes the UIDs, the common modules, the pixels and the files.

:func:`load_folder` takes a folder of the user's own files instead (``--input DIR``).
"""

from __future__ import annotations

import hashlib
import struct
import warnings
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom import dcmread, dcmwrite
from pydicom import uid as uids
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import BytesLengthException, InvalidDicomError

from lab.dicom.data.iods import MODULES, PROFILES, WITH_FRAME_OF_REFERENCE, Profile
from lab.errors import LabError
from lab.model.dicom import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, name_uid

__all__ = ["MODALITIES", "PROFILES", "Profile", "Study", "generate_study", "load_folder"]

MODALITIES: tuple[str, ...] = ("CT", "MR", "CR", "DX", "MG", "US", "NM")

def _uid(*parts: object) -> uids.UID:
    """The lab's name-based UID of ``parts`` (:func:`lab.model.dicom.name_uid`, PS3.5 B.2):
    the same on every run. (pydicom's ``generate_uid(prefix=None)`` ignores its entropy and is
    random, so it cannot be used for repeatable UIDs.)"""
    return uids.UID(name_uid(*parts))


@dataclass(frozen=True)
class Study:
    """What :func:`generate_study` wrote: one series, one file per object."""

    modality: str
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str
    patient_name: str
    files: tuple[Path, ...]
    total_bytes: int


def generate_study(
    modality: str,
    out_dir: Path,
    *,
    seed: int = 0,
    objects: int | None = None,
    patient_name: str | None = None,
) -> Study:
    """Write a synthetic study of ``modality`` into ``out_dir`` as ``<MOD>-0001.dcm``, ...

    Same arguments, byte-identical files; another seed gives other UIDs, dates and pixels.
    ``objects`` defaults to the profile's count; ``patient_name`` to ``TELERAD^SYNTH<seed>``
    (ASCII, the default character repertoire of PS3.5 §6.1, so it can be found on the wire).
    """
    profile = _checked_profile(modality, seed, objects)
    key = _Key(
        profile,
        seed,
        profile.objects if objects is None else objects,
        f"TELERAD^SYNTH{seed}" if patient_name is None else _checked_name(patient_name),
    )
    study = _study_dataset(key)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for index in range(1, key.count + 1):
        path = out_dir / f"{modality}-{index:04d}.dcm"
        _write(_instance(key, study, index), path)
        files.append(path)
    return Study(
        modality=modality,
        study_instance_uid=study.StudyInstanceUID,
        series_instance_uid=study.SeriesInstanceUID,
        patient_id=study.PatientID,
        patient_name=key.name,
        files=tuple(files),
        total_bytes=sum(p.stat().st_size for p in files),
    )


@dataclass(frozen=True)
class _Key:
    """Everything a study's bytes follow from."""

    profile: Profile
    seed: int
    count: int
    name: str

    @property
    def parts(self) -> tuple[object, ...]:
        return (self.profile.modality, self.seed, self.count, self.name)


def _checked_profile(modality: str, seed: int, objects: int | None) -> Profile:
    if modality not in PROFILES:
        known = ", ".join(MODALITIES)
        raise LabError(f"unknown modality {modality!r}; known modalities: {known}")
    if objects is not None and objects < 1:
        raise LabError(f"objects must be at least 1, got {objects}")
    if seed < 0:
        raise LabError(f"seed must be zero or positive, got {seed}")
    return PROFILES[modality]


def _checked_name(name: str) -> str:
    """A Person Name (PS3.5 §6.2 PN) in the default repertoire: printable ASCII, no backslash."""
    if not name or not name.isascii() or not name.isprintable() or "\\" in name or len(name) > 64:
        raise LabError(f"patient name {name!r} must be 1-64 printable ASCII characters, no '\\'")
    return name


def _digest(*parts: object) -> int:
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _study_dataset(key: _Key) -> Dataset:
    """Patient, General Study, General Series and General Equipment modules (PS3.3 C.7.1.1,
    C.7.2.1, C.7.3.1, C.7.5.1), shared by every object of the study.

    The patient (ID, birth date, sex) depends only on seed and name, so studies of several
    modalities made with one seed belong to one patient, as in a real referral.
    """
    profile, seed, name = key.profile, key.seed, key.name
    day = date(2007, 1, 1) + timedelta(days=_digest("date", seed) % 3650)
    born = day - timedelta(days=365 * 20 + _digest("born", seed, name) % (365 * 60))
    seconds = 8 * 3600 + _digest("time", seed, profile.modality) % (10 * 3600)
    ds = Dataset()
    ds.PatientName = name
    ds.PatientID = f"TRL{_digest('patient', seed, name) % 10**9:09d}"
    ds.PatientBirthDate = born.strftime("%Y%m%d")
    ds.PatientSex = "F" if _digest("sex", seed, name) % 2 else "M"
    ds.StudyInstanceUID = _uid("study", *key.parts)
    ds.SeriesInstanceUID = _uid("series", *key.parts)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = day.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = (
        f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"
    )
    ds.AccessionNumber = f"ACC{_digest('accession', *key.parts) % 10**12:012d}"
    ds.StudyID = f"{_digest('study-id', *key.parts) % 10**8:08d}"
    ds.StudyDescription = f"teleradlab synthetic {profile.modality} study"
    ds.ReferringPhysicianName = "REFERRER^SYNTH"
    ds.Modality = profile.modality
    ds.SeriesNumber = 1
    ds.SeriesDescription = f"SYNTH {profile.modality} seed {seed}"
    ds.Manufacturer = "teleradlab"
    ds.ManufacturerModelName = "synthetic generator"
    ds.InstitutionName = "teleradlab site A"
    if profile.modality in WITH_FRAME_OF_REFERENCE:
        ds.FrameOfReferenceUID = _uid("frame-of-reference", *key.parts)
        ds.PositionReferenceIndicator = ""
    return ds


def _instance(key: _Key, study: Dataset, index: int) -> Dataset:
    """One object: SOP Common (PS3.3 C.12.1), the study's modules, Image Pixel (C.7.6.3),
    the modality's own modules, and the pixels."""
    profile = key.profile
    ds = Dataset()
    ds.SOPClassUID = profile.sop_class_uid
    ds.SOPInstanceUID = _uid("instance", *key.parts, index)
    ds.update(study)
    ds.InstanceNumber = index
    ds.SamplesPerPixel = profile.samples_per_pixel
    ds.PhotometricInterpretation = profile.photometric
    if profile.samples_per_pixel > 1:
        ds.PlanarConfiguration = 0
    ds.Rows = profile.rows
    ds.Columns = profile.columns
    ds.BitsAllocated = profile.bits_allocated
    ds.BitsStored = profile.bits_stored
    ds.HighBit = profile.bits_stored - 1
    ds.PixelRepresentation = 0
    if profile.frames > 1:
        ds.NumberOfFrames = profile.frames
    MODULES[profile.modality](ds, profile, index)
    rng = np.random.default_rng([key.seed, MODALITIES.index(profile.modality), index])
    pixels = _pixels(profile, rng, index, key.count)
    ds.add_new(0x7FE00010, "OW" if profile.bits_allocated > 8 else "OB", pixels.tobytes())
    return ds


def _write(ds: Dataset, path: Path) -> None:
    """Write a PS3.10 §7 file: 128-byte preamble, "DICM", File Meta Information (group 0002,
    always Explicit VR Little Endian), then the data set in Explicit VR Little Endian."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = uids.ExplicitVRLittleEndian
    meta.ImplementationClassUID = uids.UID(IMPLEMENTATION_CLASS_UID)  # PS3.10 7.1
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds.file_meta = meta
    dcmwrite(path, ds, enforce_file_format=True)



# --- pixels --------------------------------------------------------------------------------

#: Ellipses (centre x, centre y, half-width, half-height, intensity) in [-1, 1] image space.
_BODY = ((0.0, 0.0, 0.72, 0.9, 0.45), (0.0, 0.55, 0.1, 0.08, 0.4),
         (-0.3, -0.1, 0.16, 0.3, -0.25), (0.3, -0.1, 0.16, 0.3, -0.25),
         (0.2, 0.3, 0.12, 0.1, 0.08), (-0.15, 0.25, 0.06, 0.05, 0.15))  # fmt: skip
_BREAST = ((-1.0, 0.0, 0.9, 0.8, 0.5), (-0.5, 0.1, 0.12, 0.08, 0.2), (-0.6, -0.3, 0.03, 0.03, 0.4))


def _phantom(
    rows: int, columns: int, shapes: tuple[tuple[float, ...], ...], t: float
) -> NDArray[np.float32]:
    """A smooth phantom in [0, 1]: axis-aligned ellipses (their sizes follow ``t``, the slice or
    frame position in [0, 1]) over a gentle gradient. Broadcasting keeps it cheap at 13 Mpixel."""
    y = np.linspace(-1.0, 1.0, rows, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, columns, dtype=np.float32)[None, :]
    image = 0.02 + 0.02 * (x + 1.0) + 0.02 * y * y
    scale = np.float32(0.75 + 0.25 * np.sin(np.pi * t))
    for cx, cy, a, b, value in shapes:
        inside = ((x - cx) / (a * scale)) ** 2 + ((y - cy) / (b * scale)) ** 2 <= 1.0
        image = image + np.float32(value) * inside
    return np.clip(image, 0.0, 1.0).astype(np.float32, copy=False)


def _pixels(profile: Profile, rng: np.random.Generator, index: int, count: int) -> NDArray[Any]:
    """Pixel Data, little-endian: phantom plus seeded noise, so it is not trivially compressible
    (a real link's compression, if any, sees realistic entropy)."""
    if profile.modality == "US":
        return _ultrasound(profile, rng)
    if profile.modality == "NM":
        return _nuclear(profile, rng)
    shapes = _BREAST if profile.modality == "MG" else _BODY
    t = index / (count + 1)
    top = (1 << profile.bits_stored) - 1
    noise = top >> 5
    image = _phantom(profile.rows, profile.columns, shapes, t) * np.float32(top - noise)
    grain = rng.integers(0, noise, size=image.shape, dtype=np.uint16, endpoint=True)
    return (image.astype(np.uint16) + grain).astype("<u2")


def _ultrasound(profile: Profile, rng: np.random.Generator) -> NDArray[Any]:
    """RGB cine, colour-by-pixel (PlanarConfiguration 0): grey B-mode speckle plus a moving
    colour-flow box in red and blue."""
    rows, columns, frames = profile.rows, profile.columns, profile.frames
    out = np.empty((frames, rows, columns, 3), dtype=np.uint8)
    box = (slice(rows // 3, rows // 2), slice(columns // 3, columns // 2))
    for frame in range(frames):
        grey = _phantom(rows, columns, _BODY, frame / frames) * np.float32(190.0)
        speckle = rng.integers(0, 64, size=(rows, columns), dtype=np.uint8)
        out[frame] = (grey.astype(np.uint8) + speckle)[..., None]
        flow = np.uint8(40 + (frame % 10) * 20)
        out[frame][box] = (flow, 0, 255 - flow)
    return out


def _nuclear(profile: Profile, rng: np.random.Generator) -> NDArray[Any]:
    """Dynamic counts: two 'kidneys' whose uptake rises then washes out, Poisson noise."""
    kidneys = ((-0.35, 0.0, 0.18, 0.3, 1.0), (0.35, 0.0, 0.18, 0.3, 1.0))
    base = _phantom(profile.rows, profile.columns, kidneys, 0.5)
    frames = []
    for frame in range(profile.frames):
        uptake = 20.0 + 400.0 * (frame / 8.0) * np.exp(1.0 - frame / 8.0)
        frames.append(rng.poisson(base * uptake + 2.0))
    return np.stack(frames).astype("<u2")


# --- the user's own folder ---------------------------------------------------------------

#: What pydicom raises on a damaged file; reported per file, never fatal to a run.
_READ_ERRORS = (OSError, ValueError, TypeError, KeyError, IndexError, OverflowError,
                NotImplementedError, AttributeError)  # fmt: skip


def load_folder(path: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Walk ``path`` (recursively, in sorted order) for ``--input DIR``.

    Returns the valid Part-10 files (PS3.10 §7: preamble, "DICM", File Meta Information with a
    Transfer Syntax UID; the data set has SOP Class and SOP Instance UIDs) and, for every other
    file, the reason it was skipped. An empty first list is not an error here: the caller says
    what to do with a folder holding nothing to send.
    """
    if not path.is_dir():
        raise LabError(f"input folder {path} is not a directory")
    good: list[Path] = []
    bad: list[tuple[Path, str]] = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        reason = _problem(file)
        if reason is None:
            good.append(file)
        else:
            bad.append((file, reason))
    return good, bad


def _problem(path: Path) -> str | None:
    """Why ``path`` is not a sendable DICOM file, or None.

    pydicom converts values lazily, so a damaged file can fail at any access: everything is
    inside the ``try``. Its warnings about odd values are kept off the user's terminal; what
    matters for sending is checked here.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _check(path)
    except InvalidDicomError:
        return "not a DICOM Part 10 file (no 'DICM' after the 128-byte preamble)"
    except (EOFError, struct.error, BytesLengthException) as exc:
        return f"truncated or corrupt: {exc}"
    except _READ_ERRORS as exc:
        return f"unreadable: {type(exc).__name__}: {exc}"


def _check(path: Path) -> str | None:
    size = path.stat().st_size
    ds = dcmread(path)
    # pydicom reads a truncated file without complaint. Elements are read in ascending order and
    # reading stops at the end of the file, so only the last one can be short; look at it before
    # anything converts it from raw.
    last = ds.get_item(max(ds.keys(), default=0x00080000))
    if (
        isinstance(last, RawDataElement)
        and last.length != 0xFFFFFFFF
        and last.value_tell + last.length > size
    ):
        return f"truncated: element {last.tag} runs past the end of the file ({size} bytes)"
    if not ds.file_meta.get("TransferSyntaxUID"):
        return "no Transfer Syntax UID in the File Meta Information"
    for keyword in ("SOPClassUID", "SOPInstanceUID"):
        value = ds.get(keyword)
        if not value:
            return f"no {keyword} (not a composite object that can be stored)"
        if not uids.UID(value).is_valid:
            return f"invalid {keyword} {value!r} (PS3.5 §9.1)"
    image = "Rows" in ds or "Image Storage" in uids.UID(ds.SOPClassUID).name
    if image and not {"PixelData", "FloatPixelData", "DoubleFloatPixelData"} & set(ds.dir()):
        return "truncated: an image with no Pixel Data"
    return None
