"""WeCom (企业微信) 智能机器人 callback crypto: the WXBizMsgCrypt protocol, implemented on `cryptography`.

Every callback WeCom sends carries ``msg_signature``, ``timestamp`` and ``nonce`` in the query string and an
encrypted payload (``echostr`` in the query of the GET URL verification, ``{"encrypt": ...}`` in the JSON body
of a POST). The protocol:

* Signature: ``sha1("".join(sorted([token, timestamp, nonce, encrypt]))).hexdigest()``.
* Key: the 43-character EncodingAESKey is base64 without its trailing ``=``; ``b64decode(key + "=")`` gives the
  32-byte AES-256 key, and the IV is its first 16 bytes. The cipher is AES-256-CBC.
* Plaintext: ``16 random bytes | msg length (4 bytes, big-endian) | msg | receive_id``, padded PKCS#7-style to
  a multiple of 32 bytes (pad value 1..32), then encrypted and base64-encoded. ``receive_id`` is the CorpID for
  apps, and the empty string for AI bots.

Passive replies travel the other way: the reply text is encrypted the same way and signed with a timestamp and
nonce of our choosing, in a JSON envelope ``{"encrypt", "msgsignature", "timestamp", "nonce"}``.

Every failure to authenticate or decode an incoming payload raises WeComCryptoError, which the HTTP handler
answers with 403. Nothing here logs: the token and key are secrets, and so are the decrypted payloads.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32  # WXBizMsgCrypt pads to 32 bytes, not to the AES block size
RANDOM_PREFIX = 16
LENGTH_FIELD = 4
KEY_CHARS = 43
MAX_TIMESTAMP_DIGITS = 12  # seconds since the epoch; anything longer is garbage


class WeComCryptoError(Exception):
    """Bad signature, ciphertext, padding, receive id or timestamp: the caller answers 403."""


def _aes_key(encoding_aes_key: str) -> bytes:
    if not isinstance(encoding_aes_key, str) or len(encoding_aes_key) != KEY_CHARS:
        got = len(encoding_aes_key) if isinstance(encoding_aes_key, str) else type(encoding_aes_key).__name__
        raise ValueError(f"WeCom EncodingAESKey must be {KEY_CHARS} characters, got {got}")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except ValueError:  # binascii.Error, or non-ASCII characters
        raise ValueError("WeCom EncodingAESKey is not valid base64") from None
    if len(key) != 32:
        raise ValueError("WeCom EncodingAESKey does not decode to a 32-byte AES key")
    return key


class WeComCrypto:
    """Signs, verifies, encrypts and decrypts WeCom callback payloads for one bot (token + EncodingAESKey)."""

    def __init__(
        self,
        token: str,
        encoding_aes_key: str,
        receive_id: str = "",
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if not isinstance(token, str) or not isinstance(receive_id, str):
            raise TypeError("WeCom token and receive id must be strings")
        if not token:
            raise ValueError("WeCom token must not be empty")
        self._token = token
        self._key = _aes_key(encoding_aes_key)
        self._iv = self._key[:16]
        self._receive_id = receive_id.encode("utf-8")
        self._random_bytes = random_bytes

    def __repr__(self) -> str:  # keep the token and key out of tracebacks and logs
        return f"WeComCrypto(receive_id={self._receive_id.decode('utf-8')!r})"

    # --- signatures ---------------------------------------------------------------------------------------------

    def signature(self, timestamp: str, nonce: str, encrypt: str) -> str:
        """SHA1 hex of the sorted concatenation of token, timestamp, nonce and encrypt."""
        parts = sorted([self._token, timestamp, nonce, encrypt])
        return hashlib.sha1("".join(parts).encode("utf-8")).hexdigest()

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> None:
        """Raise WeComCryptoError unless msg_signature signs (timestamp, nonce, encrypt); constant-time."""
        if not all(isinstance(v, str) for v in (msg_signature, timestamp, nonce, encrypt)):
            raise WeComCryptoError("missing or non-string signature parameter")
        try:
            expected = self.signature(timestamp, nonce, encrypt)
        except UnicodeEncodeError:  # a lone surrogate (a JSON "\\ud800" escape in the body's encrypt)
            raise WeComCryptoError("signature parameter is not valid Unicode") from None
        if not hmac.compare_digest(expected.encode("ascii"), msg_signature.encode("utf-8", "surrogatepass")):
            raise WeComCryptoError("bad signature")

    # --- payloads -----------------------------------------------------------------------------------------------

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._iv))

    def decrypt(self, encrypt: str) -> str:
        """The plaintext message of a base64 ciphertext; WeComCryptoError on anything malformed."""
        if not isinstance(encrypt, str):
            raise WeComCryptoError("ciphertext is not a string")
        try:
            ciphertext = base64.b64decode(encrypt, validate=True)
        except ValueError:  # binascii.Error, or non-ASCII characters
            raise WeComCryptoError("ciphertext is not valid base64") from None
        if not ciphertext or len(ciphertext) % 16:
            raise WeComCryptoError("ciphertext length is not a positive multiple of 16")
        decryptor = self._cipher().decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()

        pad = padded[-1]
        if not 1 <= pad <= BLOCK or pad > len(padded) or padded[-pad:] != bytes([pad]) * pad:
            raise WeComCryptoError("bad padding")
        content = padded[:-pad]
        if len(content) < RANDOM_PREFIX + LENGTH_FIELD:
            raise WeComCryptoError("plaintext too short")
        (msg_len,) = struct.unpack(">I", content[RANDOM_PREFIX : RANDOM_PREFIX + LENGTH_FIELD])
        start = RANDOM_PREFIX + LENGTH_FIELD
        if msg_len > len(content) - start:
            raise WeComCryptoError("message length out of range")
        msg, receive_id = content[start : start + msg_len], content[start + msg_len :]
        if not hmac.compare_digest(receive_id, self._receive_id):
            raise WeComCryptoError("wrong receive id")
        try:
            return msg.decode("utf-8")
        except UnicodeDecodeError:
            raise WeComCryptoError("message is not UTF-8") from None

    def encrypt(self, message: str) -> str:
        """Base64 ciphertext of message (random prefix, length, message, receive id; padded to 32 bytes)."""
        prefix = self._random_bytes(RANDOM_PREFIX)
        if len(prefix) != RANDOM_PREFIX:
            raise ValueError(f"random_bytes returned {len(prefix)} bytes, expected {RANDOM_PREFIX}")
        msg = message.encode("utf-8")
        plain = prefix + struct.pack(">I", len(msg)) + msg + self._receive_id
        pad = BLOCK - len(plain) % BLOCK
        plain += bytes([pad]) * pad
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode("ascii")

    # --- callbacks ----------------------------------------------------------------------------------------------

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """GET URL verification: the plaintext echostr to answer with, after checking its signature."""
        self.verify(msg_signature, timestamp, nonce, echostr)
        return self.decrypt(echostr)

    def open(
        self, msg_signature: str, timestamp: str, nonce: str, encrypt: str, *, now: float, max_skew: float = 300
    ) -> str:
        """POST callback: check the timestamp is within max_skew seconds of now, verify, decrypt."""
        if (
            not isinstance(timestamp, str)
            or not timestamp.isascii()
            or not timestamp.isdigit()
            or len(timestamp) > MAX_TIMESTAMP_DIGITS
        ):
            raise WeComCryptoError("timestamp is not an integer")
        if not abs(now - int(timestamp)) <= max_skew:  # `not <=` so that a NaN now counts as stale
            raise WeComCryptoError("stale timestamp")
        self.verify(msg_signature, timestamp, nonce, encrypt)
        return self.decrypt(encrypt)

    def seal(self, message: str, *, timestamp: int, nonce: str) -> dict[str, object]:
        """Passive reply envelope: the encrypted message and its signature, as WeCom's AI-bot JSON keys."""
        encrypted = self.encrypt(message)
        return {
            "encrypt": encrypted,
            "msgsignature": self.signature(str(timestamp), nonce, encrypted),
            "timestamp": timestamp,
            "nonce": nonce,
        }
