"""A lab's own PKI, made once per lab in its state directory: a CA, and per site a signing
certificate (the key that signs the site's integrity manifests). Later users (IKE, DICOM TLS,
the PS3.15 object security of runs) add their certificates to the same CA."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.model.names import LabPaths
from lab.model.topology import Node, Topology
from lab.security.pki.authority import CA, Credential, create_ca, load_ca


@dataclass(frozen=True)
class LabPki:
    ca: CA
    signers: dict[str, Credential]

    @property
    def ca_cert(self) -> Path:
        return self.ca.cert_path

    def signer(self, site: str) -> Credential:
        return self.signers[site]

    def tls(self, node: Node, rsa: bool = False) -> Credential:
        """The DICOM TLS key pair of ``node`` (server and client use: the PACS is both), naming
        the node and its addresses; RSA where the retired profiles need RSA key transport."""
        name = f"tls-{node.name}{'-rsa' if rsa else ''}"
        d = self.ca.dir
        if (d / f"{name}.key").exists() and (d / f"{name}.crt").exists():
            return Credential(name, d / f"{name}.key", d / f"{name}.crt")
        return self.ca.issue(name, dns=[node.name], ips=[str(a.ip) for a in node.addresses()],
                             usages={"server", "client"},
                             key_type="rsa-2048" if rsa else "ecdsa-p256")


    def objects(self, site: str) -> Credential:
        """The RSA-2048 object credential of ``site`` (made on first use): it signs objects
        (PS3.15 Annex C Base/Creator/Authorization RSA profiles) and receives what other sites
        encrypt to it (Annex E Encrypted Attributes, Annex D secure media: RSA key transport),
        hence digitalSignature, contentCommitment and keyEncipherment."""
        name = f"objects-{site}"
        d = self.ca.dir
        if (d / f"{name}.key").exists() and (d / f"{name}.crt").exists():
            return Credential(name, d / f"{name}.key", d / f"{name}.crt")
        return self.ca.issue(name, usages={"signing", "encipherment"}, key_type="rsa-2048")


def ensure_lab_pki(paths: LabPaths, topology: Topology) -> LabPki:
    """Load the lab's PKI, creating whatever part of it does not exist yet."""
    d = paths.data_dir / "pki"
    ca = load_ca(d) if (d / "ca.crt").exists() else create_ca(d, f"teleradlab {paths.lab} CA")
    signers = {}
    for site in topology.sites:
        name = f"site-{site.name}"
        key, cert = d / f"{name}.key", d / f"{name}.crt"
        if key.exists() and cert.exists():
            signers[site.name] = Credential(name, key, cert)
        else:
            signers[site.name] = ca.issue(name, usages={"signing"})
    return LabPki(ca, signers)
