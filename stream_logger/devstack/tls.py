"""The dev stack's secured listener: a certificate authority, a server certificate and a SCRAM user.

Made with the ``openssl`` command (the package does not depend on ``cryptography``), once per home, under
``<home>/kafka/secure/`` (owner-only): ``ca.pem`` (what clients trust), ``server.pem`` (the broker's PEM key store:
its private key, then its certificate and the CA's) and ``credentials`` (the SCRAM user name and its random
password, one ``name=value`` a line). Keys are EC P-256: generated in milliseconds, so ``dev up --secure`` costs
little more than ``dev up``.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import DevStackError
from . import process

__all__ = ["SCRAM_MECHANISM", "SCRAM_USER", "CertificateAuthority", "SecureListener", "make_ca"]

SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_USER = "stream-logger"
_DAYS = "3650"


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise DevStackError("the openssl command is needed for `dev up --secure` (on Debian: apt-get install openssl)")
    result = subprocess.run(
        [openssl, *args], capture_output=True, text=True, check=False, cwd=cwd, umask=process.OWNER_ONLY_UMASK
    )
    if result.returncode != 0:
        raise DevStackError(f"openssl {args[0]} failed (exit {result.returncode}): {result.stderr.strip()[-500:]}")


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A self-signed CA: ``cert`` is what clients trust, ``key`` signs server certificates."""

    cert: Path
    key: Path


def make_ca(folder: Path, name: str = "stream-logger dev CA") -> CertificateAuthority:
    """A new certificate authority in ``folder`` (``ca.pem``, ``ca.key``), created owner-only."""
    process.make_owner_only_dir(folder)
    ca = CertificateAuthority(folder / "ca.pem", folder / "ca.key")
    _openssl(
        "req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", str(ca.key), "-out", str(ca.cert), "-days", _DAYS, "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    return ca


class SecureListener:
    """The files behind the broker's SASL_SSL listener, in ``folder``; :meth:`ensure` makes what is missing."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca = CertificateAuthority(folder / "ca.pem", folder / "ca.key")
        self.key_store = folder / "server.pem"
        self.credentials_file = folder / "credentials"

    def ensure(self, host: str) -> None:
        """Create the CA, the server certificate for ``host`` (and ``localhost``) and the SCRAM password, unless
        they exist."""
        process.make_owner_only_dir(self.folder)
        if not self.ca.cert.exists():
            make_ca(self.folder)
        if not self.key_store.exists():
            self._server_certificate(host)
        if not self.credentials_file.exists():
            self.credentials_file.touch(mode=process.OWNER_ONLY_FILE_MODE)
            self.credentials_file.write_text(f"username={SCRAM_USER}\npassword={secrets.token_urlsafe(24)}\n")

    def _server_certificate(self, host: str) -> None:
        key, request, cert = self.folder / "server.key", self.folder / "server.csr", self.folder / "server.crt"
        extensions = self.folder / "server.ext"
        extensions.write_text(
            f"subjectAltName=IP:{host},DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
        )
        _openssl(
            "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", str(key), "-out", str(request), "-subj", f"/CN={host}", cwd=self.folder,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", str(request), "-CA", str(self.ca.cert), "-CAkey", str(self.ca.key),
            "-CAcreateserial", "-out", str(cert), "-days", _DAYS, "-extfile", str(extensions), cwd=self.folder,
        )  # fmt: skip
        # Kafka's PEM key store: the PKCS#8 private key, then the certificate chain.
        self.key_store.touch(mode=process.OWNER_ONLY_FILE_MODE)
        self.key_store.write_text(key.read_text() + cert.read_text() + self.ca.cert.read_text())
        for path in (key, request, cert, extensions):
            path.unlink()

    def credentials(self) -> tuple[str, str]:
        """The SCRAM user name and password."""
        try:
            pairs = dict(line.split("=", 1) for line in self.credentials_file.read_text().splitlines() if "=" in line)
            return pairs["username"], pairs["password"]
        except (OSError, KeyError) as exc:
            raise DevStackError(
                f"the secured listener's credentials ({self.credentials_file}) are missing: "
                "run stream-logger dev up --secure"
            ) from exc

    def scram_setting(self) -> str:
        """The ``--add-scram`` / ``--add-config`` value that creates the SCRAM user."""
        user, password = self.credentials()
        return f"{SCRAM_MECHANISM}=[name={user},password={password}]"
