import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from portal import signing


def test_sign_and_verify_with_the_public_key_alone(tmp_path):
    key = signing.load_private_key(signing.write_new_key(tmp_path / "k.pem"))
    public = signing.load_public_key(signing.public_key_pem(key.public_key()))
    signature = base64.b64encode(key.sign(b"statement")).decode()
    assert signing.verify(public, b"statement", signature)
    assert not signing.verify(public, b"statement!", signature)
    assert not signing.verify(public, b"statement", "not base64!")


def test_key_files_are_private_and_never_overwritten(tmp_path):
    path = signing.write_new_key(tmp_path / "k.pem")
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        signing.write_new_key(path)


def test_wrong_keys_are_refused_with_a_reason(tmp_path):
    with pytest.raises(signing.SigningKeyError, match="cannot read"):
        signing.load_private_key(tmp_path / "missing.pem")
    not_pem = tmp_path / "x.pem"
    not_pem.write_text("hello")
    with pytest.raises(signing.SigningKeyError, match="not an unencrypted PEM"):
        signing.load_private_key(not_pem)
    ec = tmp_path / "ec.pem"
    ec.write_bytes(generate_private_key(SECP256R1()).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    with pytest.raises(signing.SigningKeyError, match="not an Ed25519 key"):
        signing.load_private_key(ec)
