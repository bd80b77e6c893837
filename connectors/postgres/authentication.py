"""The authentication exchange: the server's Authentication* requests ('R') and the client's
'p' answers (PasswordMessage, SASLInitialResponse, SASLResponse).

All client answers share the tag 'p' and only the exchange in progress tells them apart, so the
frontend decoder yields a raw ``PasswordMessage`` and the caller, who knows which request it made,
parses it with ``parse_password`` / ``parse_sasl_initial`` / ``parse_sasl_response``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .wire import (
    U32,
    BackendMessage,
    FrontendMessage,
    Message,
    Reader,
    cstring,
    frame,
    length_prefixed,
    with_raw,
)

_CLIENT_TEXT = "strict"
_SERVER_TEXT = "surrogateescape"


# --- authentication ('R') -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthenticationOk(BackendMessage):
    msg_type: ClassVar[bytes] = b"R"
    code: ClassVar[int] = 0

    def encode(self) -> bytes:
        return b"R\x00\x00\x00\x08\x00\x00\x00\x00"


@dataclass(frozen=True, slots=True)
class AuthenticationCleartextPassword(BackendMessage):
    msg_type: ClassVar[bytes] = b"R"
    code: ClassVar[int] = 3

    def encode(self) -> bytes:
        return b"R\x00\x00\x00\x08\x00\x00\x00\x03"


@dataclass(frozen=True, slots=True)
class AuthenticationMD5Password(BackendMessage):
    msg_type: ClassVar[bytes] = b"R"
    code: ClassVar[int] = 5

    salt: bytes

    def __post_init__(self) -> None:
        if len(self.salt) != 4:
            raise ValueError("an MD5 salt is 4 bytes")

    def encode(self) -> bytes:
        return frame(b"R", U32.pack(5) + self.salt)


@dataclass(frozen=True, slots=True)
class AuthenticationSASL(BackendMessage):
    msg_type: ClassVar[bytes] = b"R"
    code: ClassVar[int] = 10

    mechanisms: tuple[str, ...]

    def encode(self) -> bytes:
        return frame(
            b"R", U32.pack(10) + b"".join(cstring(m, _SERVER_TEXT) for m in self.mechanisms) + b"\0"
        )


@dataclass(frozen=True, slots=True)
class AuthenticationSASLContinue(BackendMessage):
    msg_type: ClassVar[bytes] = b"R"
    code: ClassVar[int] = 11

    data: bytes

    def encode(self) -> bytes:
        return frame(b"R", U32.pack(11) + self.data)


@dataclass(frozen=True, slots=True)
class AuthenticationSASLFinal(BackendMessage):
    msg_type: ClassVar[bytes] = b"R"
    code: ClassVar[int] = 12

    data: bytes

    def encode(self) -> bytes:
        return frame(b"R", U32.pack(12) + self.data)


_SPECIFIC_AUTH_CODES = frozenset({0, 3, 5, 10, 11, 12})


@dataclass(frozen=True, slots=True)
class AuthenticationRequest(BackendMessage):
    """Any other authentication request (Kerberos 2, GSS 7, GSSContinue 8, SSPI 9, unknown)."""

    msg_type: ClassVar[bytes] = b"R"

    code: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if self.code in _SPECIFIC_AUTH_CODES:
            raise ValueError(f"authentication code {self.code} has its own message class")

    def encode(self) -> bytes:
        return frame(b"R", U32.pack(self.code) + self.data)


def decode_authentication(buf: bytes, pos: int, raw: bytes) -> Message:
    r = Reader(buf, pos, "Authentication", _SERVER_TEXT)
    code = r.uint32()
    message: BackendMessage
    if code == 0:
        message = AuthenticationOk()
    elif code == 3:
        message = AuthenticationCleartextPassword()
    elif code == 5:
        message = AuthenticationMD5Password(r.take(4))
    elif code == 10:
        mechanisms = []
        while (mechanism := r.cstr()) != "":
            mechanisms.append(mechanism)
        message = AuthenticationSASL(tuple(mechanisms))
    elif code == 11:
        message = AuthenticationSASLContinue(r.rest())
    elif code == 12:
        message = AuthenticationSASLFinal(r.rest())
    else:
        message = AuthenticationRequest(code, r.rest())
    r.finish()
    return with_raw(message, raw)


# --- the client's answers ('p') -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PasswordMessage(FrontendMessage):
    """Any 'p' message: password, SASLInitialResponse, SASLResponse or GSSResponse.

    They share one tag and only the authentication exchange in progress says which it is, so the
    decoder yields the raw payload and the caller parses it (``parse_password``, ``parse_sasl_*``).
    """

    msg_type: ClassVar[bytes] = b"p"

    data: bytes

    def encode(self) -> bytes:
        return frame(b"p", self.data)


@dataclass(frozen=True, slots=True)
class SASLInitialResponse(FrontendMessage):
    msg_type: ClassVar[bytes] = b"p"

    mechanism: str
    response: bytes | None

    def encode(self) -> bytes:
        return frame(b"p", cstring(self.mechanism) + length_prefixed(self.response))


@dataclass(frozen=True, slots=True)
class SASLResponse(FrontendMessage):
    msg_type: ClassVar[bytes] = b"p"

    data: bytes

    def encode(self) -> bytes:
        return frame(b"p", self.data)


def _password_payload(message: bytes | PasswordMessage) -> tuple[bytes, bytes]:
    if isinstance(message, PasswordMessage):
        return message.data, message.raw
    return message, b""


def parse_password(message: bytes | PasswordMessage) -> str:
    """The password of a cleartext/MD5 PasswordMessage: one string and its NUL, nothing else."""
    data, _ = _password_payload(message)
    r = Reader(data, 0, "PasswordMessage", _CLIENT_TEXT)
    password = r.cstr()
    r.finish()
    return password


def parse_sasl_initial(message: bytes | PasswordMessage) -> SASLInitialResponse:
    data, raw = _password_payload(message)
    r = Reader(data, 0, "SASLInitialResponse", _CLIENT_TEXT)
    mechanism = r.cstr()
    response = r.nullable()
    r.finish()
    result = SASLInitialResponse(mechanism, response)
    if raw:
        with_raw(result, raw)
    return result


def parse_sasl_response(message: bytes | PasswordMessage) -> SASLResponse:
    data, raw = _password_payload(message)
    result = SASLResponse(data)
    if raw:
        with_raw(result, raw)
    return result


def decode_password(buf: bytes, pos: int, raw: bytes) -> Message:
    return with_raw(PasswordMessage(buf[pos:]), raw)


__all__ = [
    "AuthenticationCleartextPassword",
    "AuthenticationMD5Password",
    "AuthenticationOk",
    "AuthenticationRequest",
    "AuthenticationSASL",
    "AuthenticationSASLContinue",
    "AuthenticationSASLFinal",
    "PasswordMessage",
    "SASLInitialResponse",
    "SASLResponse",
    "decode_authentication",
    "decode_password",
    "parse_password",
    "parse_sasl_initial",
    "parse_sasl_response",
]
