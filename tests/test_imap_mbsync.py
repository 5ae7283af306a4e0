"""Mainstream IMAP clients from Debian: mbsync (package isync) syncs a mailbox both ways; curl
searches and fetches over STARTTLS and implicit TLS."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import require_tool
from imap_helpers import message, running_server
from smtp_helpers import DOCTOR as USER
from smtp_helpers import PASSWORD, setup_gateway

from gateway.pki.files import Layout


def _mbsyncrc(tmp: Path, port: int, ca: Path, local: Path) -> Path:
    rc = tmp / "mbsyncrc"
    rc.write_text(
        f"""IMAPAccount gw
Host localhost
Port {port}
User {USER}
Pass "{PASSWORD}"
SSLType IMAPS
CertificateFile {ca}
AuthMechs LOGIN

IMAPStore gw-remote
Account gw

MaildirStore gw-local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel gw
Far :gw-remote:
Near :gw-local:
Patterns *
Create Both
Expunge Both
Sync All
SyncState *
"""
    )
    return rc


def _files(folder: Path) -> list[Path]:
    return sorted(p for sub in ("cur", "new") for p in (folder / sub).glob("*"))


def test_mbsync_syncs_both_ways(gateway_home, tmp_path):
    mbsync = require_tool("mbsync")
    setup_gateway(gateway_home)
    with running_server(gateway_home) as server:
        server.deliver(USER, message("from the gateway"))
        local = tmp_path / "local"
        local.mkdir()
        rc = _mbsyncrc(tmp_path, server.tls_port, Layout.of(server.config).chain, local)

        def sync() -> None:
            r = subprocess.run([mbsync, "-c", str(rc), "-a"], capture_output=True, text=True,
                               timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr

        sync()
        [got] = _files(local / "INBOX")
        assert b"Subject: from the gateway" in got.read_bytes()
        for name in ("Sent", "Drafts", "Trash"):
            assert (local / name).is_dir()

        # Local changes go up: a new message in Sent, the INBOX one flagged and seen.
        sent = local / "Sent" / "new" / "1700000000.local1.host"
        sent.write_bytes(message("written offline"))
        got.rename(got.parent.parent / "cur" / (got.name.split(":")[0] + ":2,FS"))
        sync()
        client = server.connect(USER, PASSWORD)
        client.select("Sent")
        _, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert data[0][1] == b"Subject: written offline\r\n\r\n"
        client.select("INBOX")
        _, data = client.fetch("1", "(FLAGS)")
        assert b"\\Flagged" in data[0] and b"\\Seen" in data[0]

        # Server-side changes come down: a deletion and a new folder with a message.
        client.store("1", "+FLAGS", r"(\Deleted)")
        client.expunge()
        client.create("Archives")
        client.append("Archives", None, None, message("archived"))
        client.logout()
        sync()
        assert _files(local / "INBOX") == []
        [archived] = _files(local / "Archives")
        assert b"Subject: archived" in archived.read_bytes()


def test_curl_searches_and_fetches(gateway_home):
    curl = require_tool("curl")
    setup_gateway(gateway_home)
    with running_server(gateway_home) as server:
        server.deliver(USER, message("read with curl"))
        ca = str(Layout.of(server.config).chain)

        def run(url: str) -> str:
            r = subprocess.run(
                [curl, "-sS", "--ssl-reqd", "--cacert", ca, "--url", url,
                 "--user", f"{USER}:{PASSWORD}"],
                capture_output=True, text=True, timeout=60,
            )
            assert r.returncode == 0, r.stderr
            return r.stdout

        assert run(f"imap://localhost:{server.starttls_port}/INBOX?ALL").strip() == "* SEARCH 1"
        body = run(f"imaps://localhost:{server.tls_port}/INBOX;UID=1")
        assert "Subject: read with curl" in body and "Bonjour." in body
        r = subprocess.run(
            [curl, "-sS", "--cacert", ca, "--url", f"imaps://localhost:{server.tls_port}/INBOX",
             "--user", f"{USER}:wrong-password"],
            capture_output=True, text=True, timeout=60,
        )
        assert r.returncode != 0 and "denied" in r.stderr.lower()
