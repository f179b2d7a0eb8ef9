"""Uplinks checked before anything is made: a host interface that does not exist, or a
backend that cannot attach one (reading the host's links needs no root)."""

from __future__ import annotations

import pytest
import yaml

from lab import topology as topology_file
from lab.backends.docker.backend import DockerBackend
from lab.backends.uplink import check_host_interfaces, uplinks
from lab.errors import LabError
from lab.model.topology import Topology


def _attached(interface: str, mode: str = "macvlan") -> Topology:
    doc = {
        "sites": {"a": {
            "lan": {"family": "ipv4", "ipv4": "198.18.10.0/24"},
            "gateway": {"uplink": {"interface": interface, "mode": mode,
                                   "address": "198.18.200.2/24", "gateway": "198.18.200.1"}},
            "hosts": [{"name": "modality", "role": "modality"}],
        }},
        "security": {"mode": "ipsec", "ipsec": {"remote": {
            "address": "198.18.200.1", "identity": "remote-gw", "psk": "a-shared-key",
            "remote_ts": ["198.18.20.0/24"]}}},
    }
    return topology_file.parse(yaml.safe_dump(doc))


def test_a_missing_host_interface_is_named_before_anything_is_made() -> None:
    topo = _attached("tl-no-such0")
    assert [(n.name, i.name) for n, i in uplinks(topo)] == [("gw-a", "uplink")]
    with pytest.raises(LabError, match=r"gw-a: host interface 'tl-no-such0' \(its uplink\) "
                                        "does not exist"):
        check_host_interfaces(topo)


def test_other_backends_refuse_an_uplink() -> None:
    with pytest.raises(LabError, match="the docker backend cannot attach gw-a to the host "
                                       "interface eth1"):
        DockerBackend().preflight(_attached("eth1"))
