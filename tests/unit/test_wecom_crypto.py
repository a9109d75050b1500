"""bot/chat/wecom_crypto.py: WXBizMsgCrypt signatures, AES-256-CBC with 32-byte PKCS#7 padding, receive id and
timestamp checks, against recorded WeCom AI-bot callbacks and Tencent's official sample vector; tampering and
fuzzing only ever raise WeComCryptoError."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.chat.wecom_crypto import WeComCrypto, WeComCryptoError

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "wecom"
F: dict[str, Any] = json.loads((FIXTURES / "aibot_callbacks.json").read_text())
CALLBACKS = ["mention_text", "card_click"]
OTHER_KEY = F["official_sample_verify_url"]["encoding_aes_key"]
FAST = settings(max_examples=300, deadline=None)
UNICODE = st.characters(blacklist_categories=("Cs",))  # anything UTF-8 can carry (no lone surrogates)


def crypto(receive_id: str | None = None, **kwargs: Any) -> WeComCrypto:
    return WeComCrypto(
        F["token"], F["encoding_aes_key"], F["receive_id"] if receive_id is None else receive_id, **kwargs
    )


def raw_decrypt(encrypt: str, encoding_aes_key: str = F["encoding_aes_key"]) -> bytes:
    """The padded plaintext, straight from AES, bypassing the module under test."""
    key = base64.b64decode(encoding_aes_key + "=")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    return decryptor.update(base64.b64decode(encrypt)) + decryptor.finalize()


def flip(encrypt: str, index: int, mask: int) -> str:
    data = bytearray(base64.b64decode(encrypt))
    data[index] ^= mask
    return base64.b64encode(bytes(data)).decode("ascii")


def fixed_random(n: int) -> bytes:
    return bytes(range(n))


# --- recorded callbacks -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CALLBACKS)
def test_verify_and_decrypt_recorded_callback(name: str) -> None:
    case, c = F[name], crypto()
    q, encrypt = case["query"], case["body"]["encrypt"]
    c.verify(q["msg_signature"], q["timestamp"], q["nonce"], encrypt)
    assert c.signature(q["timestamp"], q["nonce"], encrypt) == q["msg_signature"]
    assert json.loads(c.decrypt(encrypt)) == case["plaintext"]


@pytest.mark.parametrize("name", CALLBACKS)
def test_open_recorded_callback(name: str) -> None:
    case = F[name]
    q = case["query"]
    text = crypto().open(
        q["msg_signature"], q["timestamp"], q["nonce"], case["body"]["encrypt"], now=int(q["timestamp"])
    )
    assert json.loads(text) == case["plaintext"]


def test_url_verification() -> None:
    case = F["url_verification"]
    assert crypto().verify_url(**case["query"]) == case["expected_response_body"]


def test_official_sample_vector() -> None:
    case = F["official_sample_verify_url"]
    c = WeComCrypto(case["token"], case["encoding_aes_key"], case["receive_id"])
    assert c.verify_url(**case["query"]) == case["expected_response_body"]


@pytest.mark.parametrize("name", CALLBACKS)
def test_encrypt_reproduces_recorded_ciphertext(name: str) -> None:
    """Known answer: with the recorded random prefix, encrypting the message gives WeCom's exact ciphertext."""
    encrypt = F[name]["body"]["encrypt"]
    prefix = raw_decrypt(encrypt)[:16]
    c = crypto(random_bytes=lambda n: prefix[:n])
    assert c.encrypt(c.decrypt(encrypt)) == encrypt


# --- encrypt / seal ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "",
        "hello",
        "告警 INC-12 已批准 ✅",
        '{"msgtype":"text","text":{"content":"第一行\\n第二行"}}',
        "x" * 12,
        "y" * 5000,
    ],
)
@pytest.mark.parametrize("receive_id", ["", "ww1436e0e65a779aee"])
def test_roundtrip(message: str, receive_id: str) -> None:
    c = crypto(receive_id)
    encrypted = c.encrypt(message)
    assert len(base64.b64decode(encrypted)) % 32 == 0
    assert c.decrypt(encrypted) == message


@given(st.text(UNICODE, max_size=300), st.text(UNICODE, max_size=40))
@FAST
def test_roundtrip_property(message: str, receive_id: str) -> None:
    c = crypto(receive_id)
    encrypted = c.encrypt(message)
    assert len(base64.b64decode(encrypted)) % 32 == 0
    assert c.decrypt(encrypted) == message


@pytest.mark.parametrize("length", range(70))
def test_padding_is_pkcs7_to_32_bytes(length: int) -> None:
    encrypted = crypto().encrypt("a" * length)
    padded = raw_decrypt(encrypted)
    assert len(padded) % 32 == 0
    pad = padded[-1]
    assert 1 <= pad <= 32
    assert padded[-pad:] == bytes([pad]) * pad
    assert len(padded) - pad == 16 + 4 + length


def test_full_block_of_padding() -> None:
    """16 + 4 + 12 = 32 bytes of content: PKCS#7 adds a whole 32-byte block of 0x20."""
    c = crypto()
    encrypted = c.encrypt("x" * 12)
    padded = raw_decrypt(encrypted)
    assert len(padded) == 64
    assert padded[32:] == bytes([32]) * 32
    assert c.decrypt(encrypted) == "x" * 12


def test_encrypt_is_deterministic_with_injected_random() -> None:
    a, b = crypto(random_bytes=fixed_random), crypto(random_bytes=fixed_random)
    assert a.encrypt("告警") == b.encrypt("告警")
    assert raw_decrypt(a.encrypt("告警"))[:16] == bytes(range(16))
    assert crypto().encrypt("告警") != crypto().encrypt("告警")  # os.urandom by default


def test_random_bytes_of_wrong_length_rejected() -> None:
    with pytest.raises(ValueError):
        crypto(random_bytes=lambda n: b"short").encrypt("hi")


def test_seal() -> None:
    c = crypto(random_bytes=fixed_random)
    envelope = c.seal("已收到，正在处理", timestamp=1763961700, nonce="rnonce")
    assert set(envelope) == {"encrypt", "msgsignature", "timestamp", "nonce"}
    assert envelope["timestamp"] == 1763961700 and envelope["nonce"] == "rnonce"
    assert isinstance(envelope["encrypt"], str) and isinstance(envelope["msgsignature"], str)
    c.verify(envelope["msgsignature"], "1763961700", "rnonce", envelope["encrypt"])
    assert c.decrypt(envelope["encrypt"]) == "已收到，正在处理"
    assert c.open(envelope["msgsignature"], "1763961700", "rnonce", envelope["encrypt"], now=1763961700) == (
        "已收到，正在处理"
    )
    assert crypto(random_bytes=fixed_random).seal("已收到，正在处理", timestamp=1763961700, nonce="rnonce") == envelope
    json.dumps(envelope)  # serialisable as the reply body


def test_signature_is_sha1_of_sorted_parts() -> None:
    import hashlib

    c = crypto()
    expected = hashlib.sha1("".join(sorted([F["token"], "1", "n", "E"])).encode()).hexdigest()
    assert c.signature("1", "n", "E") == expected
    assert c.signature("n", "1", "E") == expected  # order-independent by construction


def test_repr_hides_secrets() -> None:
    text = repr(crypto())
    assert F["token"] not in text and F["encoding_aes_key"] not in text


# --- rejections -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signature",
    [
        "0" * 40,
        "",
        "15e9321c58db509f11cdd1d9ada3166fd92fdb77",
        "15E9321C58DB509F11CDD1D9ADA3166FD92FDB76",
        "15e9321c58db509f11cdd1d9ada3166fd92fdb7",
        "签名",
    ],
)
def test_tampered_signature_rejected(signature: str) -> None:
    case = F["mention_text"]
    q = case["query"]
    c = crypto()
    with pytest.raises(WeComCryptoError):
        c.verify(signature, q["timestamp"], q["nonce"], case["body"]["encrypt"])
    with pytest.raises(WeComCryptoError):
        c.open(signature, q["timestamp"], q["nonce"], case["body"]["encrypt"], now=int(q["timestamp"]))


@pytest.mark.parametrize("field", ["timestamp", "nonce"])
def test_signature_covers_query_fields(field: str) -> None:
    case = F["mention_text"]
    q = dict(case["query"])
    q[field] = q[field][:-1] + ("1" if q[field][-1] != "1" else "2")
    with pytest.raises(WeComCryptoError, match="bad signature"):
        crypto().verify(q["msg_signature"], q["timestamp"], q["nonce"], case["body"]["encrypt"])


def test_tampered_url_verification_rejected() -> None:
    q = dict(F["url_verification"]["query"])
    q["echostr"] = flip(q["echostr"], 20, 0x01)
    with pytest.raises(WeComCryptoError, match="bad signature"):
        crypto().verify_url(**q)


def test_tampered_ciphertext_rejected_by_signature() -> None:
    case = F["card_click"]
    q = case["query"]
    tampered = flip(case["body"]["encrypt"], 40, 0x80)
    with pytest.raises(WeComCryptoError, match="bad signature"):
        crypto().open(q["msg_signature"], q["timestamp"], q["nonce"], tampered, now=int(q["timestamp"]))


@pytest.mark.parametrize("name", CALLBACKS)
def test_flipped_pad_byte_is_bad_padding(name: str) -> None:
    """XOR on the second-to-last ciphertext block lands on the last plaintext byte: the pad value."""
    tampered = flip(F[name]["body"]["encrypt"], -17, 0xFF)
    with pytest.raises(WeComCryptoError, match="bad padding"):
        crypto().decrypt(tampered)


@pytest.mark.parametrize("name", CALLBACKS)
def test_flipped_last_block_rejected(name: str) -> None:
    with pytest.raises(WeComCryptoError):
        crypto().decrypt(flip(F[name]["body"]["encrypt"], -1, 0x01))


@given(st.data())
@FAST
def test_fuzz_byte_flips(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(CALLBACKS))
    encrypt = F[name]["body"]["encrypt"]
    size = len(base64.b64decode(encrypt))
    flips = data.draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(1, 255)), min_size=1, max_size=4))
    for index, mask in flips:
        encrypt = flip(encrypt, index, mask)
    try:
        result = crypto().decrypt(encrypt)
    except WeComCryptoError:
        return
    assert isinstance(result, str)  # a flip in the first block only garbles the random prefix and the next block


@given(st.binary(max_size=300))
@FAST
def test_fuzz_random_ciphertexts(blob: bytes) -> None:
    try:
        result = crypto().decrypt(base64.b64encode(blob).decode("ascii"))
    except WeComCryptoError:
        return
    assert isinstance(result, str)


@given(st.text(max_size=200))
@FAST
def test_fuzz_random_strings(text: str) -> None:
    c = crypto()
    for call in (lambda: c.decrypt(text), lambda: c.verify(text, text, text, text)):
        try:
            result = call()
        except WeComCryptoError:
            continue
        assert result is None or isinstance(result, str)


@given(st.from_regex(r"[A-Za-z0-9+/]{0,200}={0,2}", fullmatch=True))
@FAST
def test_fuzz_random_base64_strings(text: str) -> None:
    try:
        result = crypto().decrypt(text)
    except WeComCryptoError:
        return
    assert isinstance(result, str)


@pytest.mark.parametrize(
    "encrypt",
    ["", "not base64!", "QUJD", base64.b64encode(b"x" * 17).decode(), base64.b64encode(b"x" * 32).decode(), "密文"],
)
def test_malformed_ciphertext_rejected(encrypt: str) -> None:
    with pytest.raises(WeComCryptoError):
        crypto().decrypt(encrypt)


@pytest.mark.parametrize("value", [None, 123, b"abc", {"encrypt": "x"}])
def test_non_string_inputs_rejected(value: Any) -> None:
    case = F["mention_text"]
    q = case["query"]
    c = crypto()
    with pytest.raises(WeComCryptoError):
        c.decrypt(value)
    with pytest.raises(WeComCryptoError):
        c.verify(q["msg_signature"], q["timestamp"], q["nonce"], value)
    with pytest.raises(WeComCryptoError):
        c.open(q["msg_signature"], value, q["nonce"], case["body"]["encrypt"], now=int(q["timestamp"]))


def test_lone_surrogate_in_a_signed_field_is_a_crypto_error() -> None:
    """A JSON body's "encrypt" can carry "\\ud800": refused like any bad signature (found by fuzzing the app)."""
    q = F["mention_text"]["query"]
    for encrypt, nonce in (("\ud800", q["nonce"]), (F["mention_text"]["body"]["encrypt"], "\udcff")):
        with pytest.raises(WeComCryptoError, match="not valid Unicode"):
            crypto().verify(q["msg_signature"], q["timestamp"], nonce, encrypt)
        with pytest.raises(WeComCryptoError):
            crypto().open(q["msg_signature"], q["timestamp"], nonce, encrypt, now=int(q["timestamp"]))


def test_length_field_out_of_range_rejected() -> None:
    c = crypto(random_bytes=fixed_random)
    padded = raw_decrypt(c.encrypt("hello"))
    forged = padded[:16] + (1000).to_bytes(4, "big") + padded[20:]
    key = base64.b64decode(F["encoding_aes_key"] + "=")
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    encrypt = base64.b64encode(encryptor.update(forged) + encryptor.finalize()).decode()
    with pytest.raises(WeComCryptoError, match="length"):
        c.decrypt(encrypt)


def test_non_utf8_message_rejected() -> None:
    plain = bytes(16) + (2).to_bytes(4, "big") + b"\xff\xfe"
    plain += bytes([32 - len(plain) % 32]) * (32 - len(plain) % 32)
    key = base64.b64decode(F["encoding_aes_key"] + "=")
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    encrypt = base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()
    with pytest.raises(WeComCryptoError, match="UTF-8"):
        crypto().decrypt(encrypt)


@pytest.mark.parametrize("name", CALLBACKS)
def test_wrong_key_rejected(name: str) -> None:
    case = F[name]
    q = case["query"]
    other = WeComCrypto(F["token"], OTHER_KEY, "")
    other.verify(q["msg_signature"], q["timestamp"], q["nonce"], case["body"]["encrypt"])  # same token: signature ok
    with pytest.raises(WeComCryptoError):
        other.decrypt(case["body"]["encrypt"])
    with pytest.raises(WeComCryptoError):
        WeComCrypto("otherToken", F["encoding_aes_key"]).open(
            q["msg_signature"], q["timestamp"], q["nonce"], case["body"]["encrypt"], now=int(q["timestamp"])
        )


def test_wrong_receive_id_rejected() -> None:
    with pytest.raises(WeComCryptoError, match="receive id"):
        crypto("").decrypt(crypto("x").encrypt("hi"))
    with pytest.raises(WeComCryptoError, match="receive id"):
        crypto("x").decrypt(crypto("").encrypt("hi"))
    case = F["official_sample_verify_url"]
    with pytest.raises(WeComCryptoError, match="receive id"):
        WeComCrypto(case["token"], case["encoding_aes_key"], "").verify_url(**case["query"])


@pytest.mark.parametrize("offset,ok", [(-301, False), (-300, True), (0, True), (300, True), (301, False)])
def test_timestamp_window(offset: int, ok: bool) -> None:
    case = F["mention_text"]
    q = case["query"]
    args = (q["msg_signature"], q["timestamp"], q["nonce"], case["body"]["encrypt"])
    now = int(q["timestamp"]) + offset
    if ok:
        assert json.loads(crypto().open(*args, now=now)) == case["plaintext"]
    else:
        with pytest.raises(WeComCryptoError, match="stale timestamp"):
            crypto().open(*args, now=now)


def test_custom_max_skew_and_nan() -> None:
    case = F["mention_text"]
    q = case["query"]
    args = (q["msg_signature"], q["timestamp"], q["nonce"], case["body"]["encrypt"])
    crypto().open(*args, now=int(q["timestamp"]) + 10, max_skew=10)
    with pytest.raises(WeComCryptoError, match="stale timestamp"):
        crypto().open(*args, now=int(q["timestamp"]) + 11, max_skew=10)
    with pytest.raises(WeComCryptoError, match="stale timestamp"):
        crypto().open(*args, now=float("nan"))


@pytest.mark.parametrize(
    "timestamp",
    ["", "abc", "1763961600.0", "-1763961600", "+1763961600", " 1763961600", "1_763_961_600", "١٧٦٣٩٦١٦٠٠", "9" * 5000],
)
def test_non_numeric_timestamp_rejected(timestamp: str) -> None:
    case = F["mention_text"]
    c = crypto()
    encrypt = case["body"]["encrypt"]
    signature = c.signature(timestamp, case["query"]["nonce"], encrypt)  # correctly signed, still rejected
    with pytest.raises(WeComCryptoError, match="timestamp"):
        c.open(signature, timestamp, case["query"]["nonce"], encrypt, now=1763961600)


@pytest.mark.parametrize(
    "key,message",
    [
        ("", "43 characters"),
        (F["encoding_aes_key"][:-1], "43 characters"),
        (F["encoding_aes_key"] + "=", "43 characters"),
        ("!" + F["encoding_aes_key"][1:], "base64"),
        ("é" + F["encoding_aes_key"][1:], "base64"),
        ("=" + F["encoding_aes_key"][1:], "base64"),
        (F["encoding_aes_key"][:-1] + "=", "32-byte"),
    ],
)
def test_bad_key_rejected(key: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        WeComCrypto(F["token"], key)
    assert not isinstance(info.value, WeComCryptoError)


def test_bad_token_rejected() -> None:
    with pytest.raises(ValueError, match="token"):
        WeComCrypto("", F["encoding_aes_key"])
