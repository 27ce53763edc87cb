"""RFC 6238 TOTP, written independently of allauth so the tests check its codes honestly."""

import base64
import hashlib
import hmac
import struct
import time


def totp_code(secret_base32: str, at: float | None = None, step: int = 30, digits: int = 6) -> str:
    key = base64.b32decode(secret_base32.upper() + "=" * (-len(secret_base32) % 8))
    if at is None:
        # The portal accepts the current step's code only (allauth's default tolerance, 0): a
        # code made in the last seconds of its step may reach the server in the next one, as
        # on a busy machine. Like a person who sees the countdown, wait for a fresh step.
        left = step - time.time() % step
        if left < 3:
            time.sleep(left + 0.05)
    counter = int((time.time() if at is None else at) // step)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)
