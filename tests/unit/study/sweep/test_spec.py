"""Sweep files: every shipped sweep expands as promised; every mistake is named by file, field
path and value; the seam refuses what this version cannot build before anything exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.backends.fake import FakeBackend
from lab.errors import LabError, SweepError
from lab.study.sweep import seam, spec
from lab.study.sweep.runner import groups

SHIPPED = {"quick", "ipv6-vs-ipv4", "ipv6-ipsec-algorithms", "ipv4-tls-profiles",
           "ipsec-vs-tls-wan", "demo", "object-security", "faults"}


def _doc(**matrix: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"topology": ["ipv4"], "security": [{"mode": "none"}], "pdu": [0],
                            "modality": ["CT"], "wan": ["none"]}
    base.update(matrix)
    return {"description": "t", "matrix": base, "repetitions": 2}


def _parse(doc: dict[str, Any]) -> spec.Sweep:
    return spec.parse(yaml.safe_dump(doc), "sweeps/mine.yaml")


def test_every_shipped_sweep_expands_into_its_matrix() -> None:
    names = {p.stem for p in spec.shipped_dir().glob("*.yaml")}
    assert names == SHIPPED
    for name in names:
        sw = spec.load(spec.resolve_path(name))
        m = sw.spec.matrix
        # faults on the IKE daemon or the SAs pair with IPsec entries only
        ipsec = sum(s.mode == "ipsec" for s in m.security)
        ipsec_faults = sum(f.split("@")[0] in ("ike-restart", "rekey") for f in m.fault)
        assert len(sw.cases) == (len(m.topology) * len(m.pdu) * len(m.modality) * len(m.wan)
                                 * len(m.object_security) * len(m.associations) * len(m.window)
                                 * (len(m.security) * len(m.fault)
                                    - (len(m.security) - ipsec) * ipsec_faults))
        assert len({c.case_id for c in sw.cases}) == len(sw.cases), name
        # One lab per (topology, security, WAN): PDU, modality and object security never force
        # a rebuild.
        assert len(groups(sw.cases)) == len(m.topology) * len(m.security) * len(m.wan)


def test_shipped_sweeps_cover_the_papers_schema() -> None:
    quick = spec.load(spec.resolve_path("quick")).spec.matrix
    assert {s.mode for s in quick.security} == {"none", "ipsec", "tls"}
    assert len(quick.topology) > 1 and len(quick.pdu) > 1 and len(quick.modality) > 1
    assert "none" in quick.wan and len(quick.wan) > 1
    ipsec = spec.load(spec.resolve_path("ipv6-ipsec-algorithms")).spec.matrix
    assert ipsec.topology == ["ipv6"] and len({s.ipsec.esp for s in ipsec.security}) > 3
    tls = spec.load(spec.resolve_path("ipv4-tls-profiles")).spec.matrix
    assert tls.topology == ["ipv4"] and len({s.tls.profile for s in tls.security}) > 3
    wan = spec.load(spec.resolve_path("ipsec-vs-tls-wan")).spec.matrix
    assert any("pct" in w for w in wan.wan) and {s.mode for s in wan.security} >= {"ipsec", "tls"}


def test_case_ids_are_stable_and_groups_keep_matrix_order() -> None:
    doc = _doc(topology=["ipv4", "ipv6"], pdu=[0, 16384], modality=["CT", "MR"])
    a, b = _parse(doc), _parse(doc)
    assert [c.case_id for c in a.cases] == [c.case_id for c in b.cases]
    first = groups(a.cases)
    assert [len(g) for g in first] == [4, 4]
    assert {c.topology.stem for c in first[0]} == {"ipv4"}


@pytest.mark.parametrize(("doc", "expected"), [
    ({**_doc(), "extra": 1}, "extra: unknown key"),
    (_doc(pdu=[100]), "matrix.pdu"),
    (_doc(modality=["XX"]), "XX"),
    (_doc(security=[{"mode": "tls", "tls": {"profile": "nosuch"}}]),
     "matrix.security[0]: security.tls.profile: unknown profile 'nosuch'"),
    (_doc(security=[{"mode": "tls", "tls": {"profile": "basic", "cipher": "AES128-SHA"}}]),
     "security.tls.cipher: 'AES128-SHA' is not a cipher suite of profile 'basic'"),
    (_doc(security=[{"mode": "none", "ipsec": {"esp": "aes128gcm16"}}]),
     "matrix.security[0].ipsec: only for mode ipsec"),
    (_doc(security=[{"mode": "ipsec", "ipsec": {"esp": "AES GCM"}}]),
     "matrix.security[0]: security.ipsec.esp"),
    (_doc(security=[{"mode": "tls", "ipsec": {"ike": "aes128-sha256"}}]),
     "matrix.security[0].ipsec: only for mode ipsec"),
    (_doc(security=[{"mode": "ipsec", "proposal": "aes128gcm16"}]),
     "matrix.security.0.proposal: unknown key"),
    (_doc(topology=["nosuch"]), "matrix.topology[0]: no topology file or shipped topology"),
    (_doc(wan=["DSL 20"]), "matrix.wan"),
    (_doc(modality=["CT", "CT"]), "matrix.modality: repeated values"),
    (_doc(associations=[0]), "matrix.associations"),
    (_doc(associations=[1, 1]), "matrix.associations: repeated values"),
    (_doc(associations=["2"]), "matrix.associations"),
    (_doc(window=[0]), "matrix.window: Value error, windows are 1 to 256, got [0]"),
    (_doc(window=[16, 16]), "matrix.window: repeated values"),
    (_doc(object_security=["encrypt"]), "matrix.object_security: Value error, object security "
     "is one of none, sign, deid, sign+deid, got ['encrypt']"),
    (_doc(object_security=["sign", "sign"]), "matrix.object_security: repeated values"),
    (_doc(object_security="sign"), "matrix.object_security"),
    ({**_doc(), "courier": "yes"}, "courier"),
    ({**_doc(), "repetitions": 0}, "repetitions"),
    ({"description": "no matrix"}, "matrix: required key is missing"),
])
def test_mistakes_name_the_file_field_and_value(doc: dict[str, Any], expected: str) -> None:
    with pytest.raises(SweepError) as info:
        _parse(doc)
    text = str(info.value)
    assert "sweeps/mine.yaml" in text
    normalised = text.replace("matrix.security.0", "matrix.security[0]")
    assert expected.replace("matrix.security.0", "matrix.security[0]") in normalised, text


def test_duplicate_keys_and_bad_yaml_are_refused() -> None:
    with pytest.raises(SweepError, match=r"matrix\.pdu: duplicate key"):
        spec.parse("matrix:\n  topology: [ipv4]\n  pdu: [0]\n  pdu: [0]\n", "x.yaml")
    with pytest.raises(SweepError, match="not valid YAML"):
        spec.parse("matrix: [", "x.yaml")
    with pytest.raises(SweepError, match="no shipped sweep"):
        spec.resolve_path("nosuch")


def test_the_seam_splits_up_and_run_options() -> None:
    sw = _parse(_doc(security=[{"mode": "ipsec", "ipsec": {"esp": "aes128gcm16-ecp256"}}],
                     wan=["dsl-20m-30ms"], pdu=[16384], modality=["MR"]))
    case = sw.cases[0]
    up = seam.up_options(case)
    assert up["security"] == {"mode": "ipsec", "ipsec": {"esp": "aes128gcm16-ecp256"}}
    assert up["wan"] == "dsl-20m-30ms" and up["topology"].name == "ipv4.yaml"
    assert seam.run_params(case, sw.spec) == {"modalities": ("MR",), "pdu": 16384, "repeat": 2,
                                              "objects": None, "seed": 0,
                                              "object_security": "none", "courier": False,
                                              "associations": 1, "window": 16,
                                              "fault": None}


def test_object_security_is_an_axis_of_runs_on_one_lab() -> None:
    sw = _parse({**_doc(object_security=["none", "sign", "deid", "sign+deid"],
                        security=[{"mode": "none"}, {"mode": "tls"}]), "courier": True})
    assert [c.object_security for c in sw.cases[:4]] == ["none", "sign", "deid", "sign+deid"]
    assert [len(g) for g in groups(sw.cases)] == [4, 4]
    assert len({c.case_id for c in sw.cases}) == 8
    assert seam.run_params(sw.cases[3], sw.spec)["object_security"] == "sign+deid"
    assert seam.run_params(sw.cases[3], sw.spec)["courier"] is True
    # a case without object security keeps the id it had before the axis existed
    assert not sw.cases[0].case_id.split("_")[-2].endswith("none")
    assert "sign-deid" in sw.cases[3].case_id


def test_associations_are_a_run_parameter_sharing_the_lab() -> None:
    """Cases differing only in associations run on one lab; one association keeps the case id
    it had before the axis existed (resumed sweeps still match)."""
    single = _parse(_doc())
    sw = _parse(_doc(associations=[1, 4]))
    assert [c.associations for c in sw.cases] == [1, 4]
    assert len(groups(sw.cases)) == 1
    assert sw.cases[0].case_id == single.cases[0].case_id
    assert "assoc4" in sw.cases[1].case_id and sw.cases[1].case_id != sw.cases[0].case_id
    assert seam.run_params(sw.cases[1], sw.spec)["associations"] == 4


def test_an_impossible_security_choice_fails_before_anything_is_made(tmp_path: Path) -> None:
    case = _parse(_doc(security=[{"mode": "ipsec", "ipsec": {"esp": "aes256gcm16",
                                                             "scope": "host-to-host"}}],
                       topology=["mixed-4over6"])).cases[0]
    assert case.security_label == "ipsec-aes256gcm16-scope-host-to-host"
    with pytest.raises(LabError, match="host-to-host IPsec needs the modality and the PACS"):
        seam.build_lab(seam.up_options(case), "report-never", backend=FakeBackend())


def test_tls_settings_go_to_the_tls_part_of_the_security_section() -> None:
    sw = _parse(_doc(security=[{"mode": "tls", "tls": {"profile": "extended",
                                                       "cipher": "ECDHE-RSA-AES256-GCM-SHA384"}},
                               {"mode": "tls"}]))
    first, bare = (seam.up_options(c)["security"] for c in sw.cases)
    assert first == {"mode": "tls", "tls": {"profile": "extended",
                                            "cipher": "ECDHE-RSA-AES256-GCM-SHA384"}}
    assert bare == {"mode": "tls"}
    assert [c.security_label for c in sw.cases] == [
        "tls-extended-ECDHE-RSA-AES256-GCM-SHA384", "tls"]


def test_list_shows_every_case_and_its_lab_without_root() -> None:
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "lab", "sweep", "quick", "--list", "--name",
                          "report-l"], capture_output=True, text=True, timeout=120, check=True)
    lines = res.stdout.splitlines()
    sw = spec.load(spec.resolve_path("quick"))
    assert lines[-1] == f"{len(sw.cases)} cases on {len(groups(sw.cases))} labs"
    listed = {line.split()[2]: line.split()[1] for line in lines[:-1]}
    assert set(listed) == {c.case_id for c in sw.cases}
    for no, cases in enumerate(groups(sw.cases), start=1):
        assert {listed[c.case_id] for c in cases} == {f"report-l-{no}"}


def test_the_fault_axis_pairs_ipsec_faults_with_ipsec_and_names_bad_entries() -> None:
    sw = _parse(_doc(security=[{"mode": "ipsec"}, {"mode": "tls"}],
                     fault=["none", "rekey@1s", "link-down@2obj,seconds=1"]))
    got = [(c.security.mode, c.fault) for c in sw.cases]
    assert got == [("ipsec", "none"), ("ipsec", "rekey@1s"), ("ipsec", "link-down@2obj,seconds=1"),
                   ("tls", "none"), ("tls", "link-down@2obj,seconds=1")]
    ids = [c.case_id for c in sw.cases]
    assert len(set(ids)) == 5 and "rekey-1s" in ids[1] and "_CT_" + "rekey" not in ids[0]
    assert len(groups(sw.cases)) == 2  # a fault needs no lab of its own
    params = seam.run_params(sw.cases[1], sw.spec)
    assert params["fault"].spec.kind == "rekey" and seam.run_params(sw.cases[0],
                                                                     sw.spec)["fault"] is None
    with pytest.raises(SweepError, match=r"matrix.fault: .*unknown fault 'reboot'"):
        _parse(_doc(fault=["reboot@1s"]))
    with pytest.raises(SweepError, match=r"matrix.fault: repeated values"):
        _parse(_doc(fault=["rekey@1s", "rekey@1s"]))
