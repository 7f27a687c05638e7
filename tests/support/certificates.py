"""The test control plane's PKI: one CA, the API server's serving certificate, client
certificates for the identities that log in with one (admin, controller manager, scheduler, the
local node), and the service-account signing key. Written as PEM files into one folder."""

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=2)  # a test session's worth, with room for a clock step


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Identity:
    """Who a client certificate says it is: the user (CN) and its groups (O)."""

    user: str
    groups: tuple[str, ...] = ()


class CertificateAuthority:
    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shoal-test-ca")])
        self._name = name
        certificate = (
            _builder(name, name, self._key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(**_usage(key_cert_sign=True, crl_sign=True, digital_signature=True)), critical=True
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert = _write(directory / "ca.crt", certificate.public_bytes(serialization.Encoding.PEM))

    def serving(self, name: str, *, hosts: tuple[str, ...]) -> KeyPair:
        """A server certificate valid for these DNS names and IP addresses."""
        alternative = [_alternative_name(host) for host in hosts]
        return self._issue(
            name,
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]),
            ExtendedKeyUsageOID.SERVER_AUTH,
            alternative,
        )

    def client(self, name: str, identity: Identity) -> KeyPair:
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in identity.groups]
        subject = x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, identity.user)])
        return self._issue(name, subject, ExtendedKeyUsageOID.CLIENT_AUTH, [])

    def _issue(
        self, name: str, subject: x509.Name, usage: x509.ObjectIdentifier, alternative: list[x509.GeneralName]
    ) -> KeyPair:
        key = _new_key()
        builder = (
            _builder(subject, self._name, key)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(**_usage(digital_signature=True, key_encipherment=True)), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if alternative:
            builder = builder.add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        return KeyPair(
            cert=_write(self.directory / f"{name}.crt", certificate.public_bytes(serialization.Encoding.PEM)),
            key=_write(self.directory / f"{name}.key", _private_pem(key)),
        )


def signing_key_pair(directory: Path, name: str) -> KeyPair:
    """An RSA key and its public half (the `cert` field holds the public key): what the API server
    signs service-account tokens with, and verifies them against."""
    key = _new_key()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return KeyPair(
        cert=_write(directory / f"{name}.pub", public), key=_write(directory / f"{name}.key", _private_pem(key))
    )


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _builder(subject: x509.Name, issuer: x509.Name, key: rsa.RSAPrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _usage(**granted: bool) -> dict[str, bool]:
    names = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    )
    return {name: granted.get(name, False) for name in names}


def _alternative_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path
