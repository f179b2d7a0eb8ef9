"""``teleradlab probe``: validate a real DICOM peer before a link goes live, from this machine,
read-only by default — outside any lab, so nothing here needs a Lab handle or a backend.

- :mod:`.findings`: what a probe found and its verdicts, as pydantic models (the JSON file);
- :mod:`.path`: TCP connect times and the path MTU;
- :mod:`.association`: the DICOM association, C-ECHO, C-FIND, C-MOVE (PS3.7, PS3.8) on the
  lab's own Upper Layer (:mod:`lab.dicom.ul`);
- :mod:`.contexts`: which storage presentation contexts the peer accepts, in batches;
- :mod:`.tlsscan`: TLS versions, cipher suites, client authentication (sslyze) and the PS3.15
  Annex B profiles they add up to; :mod:`.certs`: the server's certificate judged;
- :mod:`.verdicts`: pass / warn / fail per requirement; :mod:`.probe`: the whole probe.

Floor: between ``runtime`` and the services (tests/unit/test_layers.py): it uses the DICOM
Upper Layer, the TLS library and the model, and is used by the report (its HTML page) and the
command line.
"""
