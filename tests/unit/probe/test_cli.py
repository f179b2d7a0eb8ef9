"""``teleradlab probe``'s bad input: refused with the option named, before anything is sent
(the host is never dialled: every case fails at the options)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lab.cli.main import main


@pytest.mark.parametrize(("extra", "says"), [
    (["--tls-profile", "aes"], "--tls-profile needs --tls-ca"),
    (["--tls-profile", "aes", "--tls-ca", "/nonexistent.pem"], "--tls-ca /nonexistent.pem: no "),
    (["--tls-ca", "ca.pem"], "need --tls-profile"),
    (["--tls-cert", "a.pem"], "--tls-cert and --tls-key go together"),
    (["--json", "/nonexistent/p.json"], "--json /nonexistent/p.json: no such directory"),
    (["--calling", "A" * 17], "an AE title has 1 to 16 ASCII characters"),
    (["--move-to", "BAD\\AE"], "an AE title has 1 to 16 ASCII characters"),
    (["--tls-profile", "tls9"], "'tls9' is not one of"),
])
def test_bad_input_is_named(extra: list[str], says: str, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["probe", "198.18.0.2", "104", "--called", "PACS", *extra])
    assert result.exit_code in (1, 2) and says in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not list(tmp_path.iterdir())  # nothing written


def test_called_is_required() -> None:
    result = CliRunner().invoke(main, ["probe", "198.18.0.2", "104"])
    assert result.exit_code == 2 and "--called" in result.output
