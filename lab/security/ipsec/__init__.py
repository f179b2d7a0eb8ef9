"""IPsec in the lab: strongSwan's charon in the nodes, configured only through VICI.

- :mod:`lab.model.proposals` (data, in the model) — IKE/ESP proposal keywords, their shape and
  what the machine can do;
- :mod:`lab.security.ipsec.plan` — which nodes, addresses and selectors (pure);
- :mod:`lab.security.ipsec.charon` — the daemon in a node, its config and VICI session;
- :mod:`lab.security.ipsec.tunnel` — bringing the SAs up, reading what was negotiated and the
  counters.
"""
