"""``teleradlab sign | verify | deid | reid | media export | media import | credentials``: the
DICOM security profiles of PS3.15 on plain files, outside any lab.

Each command reads Part-10 files (or every file under a directory), computes every result
first and only then writes, each file by an atomic rename: a refused object (a wrong key, an
unknown CA, a changed file) leaves nothing half done. Keys and certificates are PEM files
(``--key``, ``--cert``, ``--ca``, ``--recipient``); ``credentials`` makes RSA ones from a lab's
CA or a CA of its own, since the profiles of PS3.15 Annexes C, D and E are RSA profiles.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from pydicom.dataset import Dataset
from rich.markup import escape

from lab.cli.output import out
from lab.dicom.data.deid import Deidentifier, deidentify, read, reidentify, write_atomic
from lab.dicom.data.deid_table import EDITION, OPTIONS
from lab.dicom.data.dsig import sign as dsig_sign
from lab.dicom.data.dsig import verify as dsig_verify
from lab.dicom.data.dsig_profiles import PROFILES, SIGNING_MACS
from lab.dicom.data.media import DICOMDIR, export_study, import_fileset
from lab.errors import LabError
from lab.model.names import LabPaths
from lab.security.pki.authority import CA, create_ca, load_ca, load_certificate, load_key_pair

FC = TypeVar("FC", bound=Callable[..., Any])
_EXISTING = click.Path(exists=True, path_type=Path)
_PEM = click.Path(exists=True, dir_okay=False, path_type=Path)


def _inputs(paths: Iterable[Path]) -> list[tuple[Path, Path]]:
    """(file, name to write it under): a file by its name, a directory's files by their path
    below it (dot files and DICOMDIRs left out)."""
    found = []
    for path in paths:
        if path.is_dir():
            found += [(f, f.relative_to(path)) for f in sorted(path.rglob("*"))
                      if f.is_file() and not f.name.startswith(".") and f.name != DICOMDIR]
        else:
            found.append((path, Path(path.name)))
    if not found:
        raise LabError("no input file")
    return found


def _say(text: str) -> None:
    """One line of output, taken literally (paths may hold rich's markup brackets)."""
    out.print(escape(text), soft_wrap=True)


def _write_all(results: Sequence[tuple[Path, Dataset]], started: float, verb: str) -> None:
    for target, ds in results:
        write_atomic(ds, target)
    _say(f"{verb} {len(results)} object(s) in {time.perf_counter() - started:.3f} s")


def _key_pair(key: Path, cert: Path) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    private, certificate = load_key_pair(key, cert)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise LabError(f"{key}: the profiles of PS3.15 need an RSA key (teleradlab credentials "
                       "makes one)")
    return private, certificate


def _key_options(what: str) -> Callable[[FC], FC]:
    def apply(f: FC) -> FC:
        f = click.option("--cert", type=_PEM, required=True,
                         help=f"PEM certificate of that key ({what}).")(f)
        return click.option("--key", type=_PEM, required=True,
                            help=f"PEM RSA private key ({what}).")(f)
    return apply


@click.command("sign")
@click.argument("files", nargs=-1, required=True, type=_EXISTING)
@_key_options("the signing site's")
@click.option("--profile", type=click.Choice(list(PROFILES)), default="base-rsa",
              show_default=True, help="The signature profile whose attributes must be signed.")
@click.option("--mac", type=click.Choice(list(SIGNING_MACS)), default="SHA256",
              show_default=True, help="MAC Algorithm (PS3.3 C.12.1.1.3).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the signed copies here (default: sign the files in place).")
def sign(files: tuple[Path, ...], key: Path, cert: Path, profile: str, mac: str,
         out_dir: Path | None) -> None:
    """Add a digital signature to DICOM objects (PS3.15 Annex C, PS3.3 C.12.1.1.3).

    \b
    Profiles (all sign every signable top-level attribute; they differ in what must be there):
      base-rsa           Base RSA (C.2): RSA signature of a SHA MAC, X.509 certificate
      creator-rsa        Creator RSA (C.3): by the creator, covering the object's identity,
                         creation date, equipment and content attributes
      authorization-rsa  Authorization RSA (C.4): by a person approving it (e.g. a report),
                         covering identity and content
    The signature travels in the object (Digital Signatures Sequence FFFA,FFFA) and protects
    its integrity and origin against changes anywhere after signing; it hides nothing.
    """
    started = time.perf_counter()
    private, certificate = _key_pair(key, cert)
    results = []
    for path, name in _inputs(files):
        ds = read(path)
        dsig_sign(ds, private, certificate, profile=profile, mac=mac)
        results.append(((out_dir / name) if out_dir else path, ds))
    _write_all(results, started, "signed")


@click.command("verify")
@click.argument("files", nargs=-1, required=True, type=_EXISTING)
@click.option("--ca", "cas", type=_PEM, multiple=True, required=True,
              help="PEM certificate of a CA trusted to vouch for signers (repeatable).")
def verify(files: tuple[Path, ...], cas: tuple[Path, ...]) -> None:
    """Check every digital signature of DICOM objects (PS3.15 Annex C): the signature, every
    signed element, the signer's certificate chain to a --ca. Exits 1 when an object has no
    signature or one fails, naming the object and the element or the reason."""
    started = time.perf_counter()
    trusted = [load_certificate(ca) for ca in cas]
    failed = checked = 0
    for path, _name in _inputs(files):
        results = dsig_verify(read(path), trusted)
        if not results:
            failed += 1
            _say(f"{path}: FAILED: no digital signature")
        for result in results:
            checked += 1
            failed += not result.ok
            profiles = f", profiles {', '.join(result.profiles)}" if result.ok else ""
            _say(f"{path}: {result}{profiles}")
    if failed:
        raise LabError(f"{failed} signature(s) failed or missing")
    _say(f"verified {checked} signature(s) in {time.perf_counter() - started:.3f} s")


@click.command("deid")
@click.argument("files", nargs=-1, required=True, type=_EXISTING)
@click.option("--recipient", "recipients", type=_PEM, multiple=True, required=True,
              help="PEM certificate of the site allowed to re-identify (repeatable).")
@click.option("--option", "options", type=click.Choice(list(OPTIONS)), multiple=True,
              help="A profile option (repeatable).")
@click.option("--date-offset", type=int, default=None,
              help="Days to move dates by with retain-long-modified-dates (default: random).")
@click.option("--cipher", type=click.Choice(["aes128", "aes256"]), default="aes256",
              show_default=True)
@click.option("--out", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path), help="Where to write them.")
def deid(files: tuple[Path, ...], recipients: tuple[Path, ...], options: tuple[str, ...],
         date_offset: int | None, cipher: str, out_dir: Path) -> None:
    """De-identify DICOM objects, the original values encrypted for the receiving site
    (PS3.15 Annex E, the Basic Application Level Confidentiality Profile, E.1.1).

    \b
    Every attribute of Table E.1-1 (PS3.15 2024b) is removed, emptied, replaced by a dummy or
    a new UID as the profile says; private attributes go. The originals go into the object's
    Encrypted Attributes Sequence (0400,0500), a CMS EnvelopedData (AES, RSA key transport)
    only the --recipient's key opens ('teleradlab reid'). Options:
      retain-uids                    keep the UIDs (E.3.1)
      retain-device-identity         keep device names and serial numbers (E.3.2)
      retain-institution-identity    keep the institution (E.3.3)
      retain-patient-characteristics keep sex, age, size, weight... (E.3.4)
      retain-long-full-dates         keep dates and times (E.3.6)
      retain-long-modified-dates     move every date by one offset, keeping intervals (E.3.6)
      clean-descriptors              keep descriptions, masking identifying values (E.3.5)
    All objects of one call share the new UIDs and the date offset.
    """
    started = time.perf_counter()
    certs = tuple(load_certificate(path) for path in recipients)
    kwargs: dict[str, Any] = {} if date_offset is None else {"date_offset_days": date_offset}
    session = Deidentifier(certs, frozenset(options), cipher=cipher, **kwargs)
    results = [(out_dir / name, deidentify(read(path), session))
               for path, name in _inputs(files)]
    _write_all(results, started, f"de-identified ({EDITION})")


@click.command("reid")
@click.argument("files", nargs=-1, required=True, type=_EXISTING)
@_key_options("the receiving site's")
@click.option("--out", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path), help="Where to write them.")
def reid(files: tuple[Path, ...], key: Path, cert: Path, out_dir: Path) -> None:
    """Re-identify objects de-identified for this site (PS3.15 E.1.2), by the lab or by
    gdcmanon: the Encrypted Attributes are opened with --key and the original values put
    back. A key the objects were not encrypted for is refused and nothing is written."""
    started = time.perf_counter()
    private, certificate = _key_pair(key, cert)
    results = [(out_dir / name, reidentify(read(path), private, certificate))
               for path, name in _inputs(files)]
    _write_all(results, started, "re-identified")


@click.group("media")
def media() -> None:
    """Secure media (PS3.10 7.4, PS3.15 Annex D): a study as a DICOMDIR file-set of secure
    DICOM files for a disc or a file share.

    \b
    Each file is a CMS EnvelopedData (AES-CBC, RSA key transport to the named recipient)
    around a SignedData (the exporting site's RSA signature) of the Part-10 file: it travels
    confidential, unaltered and of known origin, and 'openssl cms' can open it. The DICOMDIR
    stays readable (it shows the directory keys: patient, study); 'teleradlab deid' first
    where even those must not travel.
    """


@media.command("export")
@click.argument("files", nargs=-1, required=True, type=_EXISTING)
@_key_options("the exporting site's signing")
@click.option("--recipient", "recipients", type=_PEM, multiple=True, required=True,
              help="PEM certificate of the site the medium is for (repeatable).")
@click.option("--cipher", type=click.Choice(["aes128", "aes256"]), default="aes256",
              show_default=True)
@click.option("--out", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="New directory for the file-set (DICOMDIR and files).")
def media_export(files: tuple[Path, ...], key: Path, cert: Path, recipients: tuple[Path, ...],
                 cipher: str, out_dir: Path) -> None:
    """Write DICOM objects as a file-set of secure files for --recipient."""
    started = time.perf_counter()
    private, certificate = _key_pair(key, cert)
    exported = export_study([path for path, _ in _inputs(files)], out_dir, key=private,
                            certificate=certificate, cipher=cipher,
                            recipients=[load_certificate(path) for path in recipients])
    _say(f"exported {len(exported.files)} secure file(s), {exported.total_bytes} bytes, "
              f"to {out_dir} in {time.perf_counter() - started:.3f} s")


@media.command("import")
@click.argument("fileset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_key_options("the receiving site's")
@click.option("--ca", "cas", type=_PEM, multiple=True, required=True,
              help="PEM certificate of a CA trusted to vouch for the exporting site.")
@click.option("--out", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the objects (<SOP Instance UID>.dcm).")
def media_import(fileset: Path, key: Path, cert: Path, cas: tuple[Path, ...],
                 out_dir: Path) -> None:
    """Verify and decrypt a file-set of secure files; any file changed, foreign or missing is
    named and then nothing is imported."""
    started = time.perf_counter()
    private, certificate = _key_pair(key, cert)
    imported = import_fileset(fileset, out_dir, key=private, certificate=certificate,
                              trusted=[load_certificate(path) for path in cas])
    _say(f"imported {len(imported.files)} object(s) signed by "
              f"{', '.join(imported.signers)} in {time.perf_counter() - started:.3f} s")


@click.command("credentials")
@click.argument("names", nargs=-1, required=True)
@click.option("--lab", "lab_name", help="Issue from this lab's CA (made at 'teleradlab up').")
@click.option("--ca-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Issue from the CA in this directory, made there if it has none.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write NAME.key and NAME.crt (default: the CA's directory).")
def credentials(names: tuple[str, ...], lab_name: str | None, ca_dir: Path | None,
                out_dir: Path | None) -> None:
    """Make RSA-2048 keys and certificates NAME.key / NAME.crt for sign, deid, reid and media
    (PS3.15 Annexes C, D, E are RSA profiles), issued by a lab's CA (--lab) or a CA of its own
    (--ca-dir). Existing ones are kept. The CA certificate to give to --ca is printed."""
    ca = _authority(lab_name, ca_dir)
    where = out_dir or ca.dir
    where.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (where / f"{name}.key").exists() and (where / f"{name}.crt").exists():
            _say(f"{name}: kept {where / name}.key, .crt")
            continue
        ca.issue(name, usages={"signing"}, key_type="rsa-2048", out_dir=where)
        _say(f"{name}: {where / name}.key, {where / name}.crt")
    _say(f"CA certificate: {ca.cert_path}")


def _authority(lab_name: str | None, ca_dir: Path | None) -> CA:
    if (lab_name is None) == (ca_dir is None):
        raise click.UsageError("give --lab or --ca-dir")
    if lab_name is not None:
        d = LabPaths(lab_name).data_dir / "pki"
        if not (d / "ca.crt").exists():
            raise LabError(f"lab {lab_name} has no CA in {d} (made by 'teleradlab up')")
        return load_ca(d)
    assert ca_dir is not None
    if (ca_dir / "ca.crt").exists():
        return load_ca(ca_dir)
    return create_ca(ca_dir, "teleradlab objects CA", key_type="rsa-2048")


#: What :mod:`lab.cli.main` registers.
OBJECT_COMMANDS = (sign, verify, deid, reid, media, credentials)
