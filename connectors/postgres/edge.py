"""The client's edge of the relay: the client's encoding on one side, the target's UTF-8 on the other.

Targets always run with ``client_encoding=UTF8``, so the parser and the masker read UTF-8 only; a
client may still use any encoding PostgreSQL supports. Every message is converted here, as the
server would convert it (:mod:`.transcode`): client bytes to UTF-8 before they are judged, UTF-8
to the client's bytes after they are masked. ``SET client_encoding`` is answered by the relay
(the target gets a no-op ``SET client_encoding TO 'UTF8'``): the inbound side switches when the
statement is forwarded (the server reads later messages in the new encoding), the outbound side
when its reply arrives, and the client is sent the ParameterStatus the server would have sent.

Sans-IO; a no-op (UTF8, SQL_ASCII) edge costs one attribute test per message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .results import ResultSet
from .transcode import (
    UTF8,
    ClientEncoding,
    CopyTranscoder,
    DataRowTranscoder,
    TranscodeError,
    bind,
    close,
    command_complete,
    copy_fail,
    describe,
    error_response,
    execute,
    notice_response,
    notification_response,
    parameter_status,
    parse,
    query,
    row_description,
)

#: Client messages whose strings are converted as they are (Bind needs its parameter types,
#: CopyData the COPY's own transcoder).
_TO_SERVER: dict[bytes, Callable[[ClientEncoding, bytes], bytes]] = {
    b"Q": query, b"P": parse, b"D": describe, b"C": close, b"E": execute, b"f": copy_fail,
}
#: Server messages likewise (DataRow and CopyData need the result's or the COPY's transcoder).
_TO_CLIENT: dict[bytes, Callable[[ClientEncoding, bytes], bytes]] = {
    b"T": row_description, b"C": command_complete, b"E": error_response,
    b"N": notice_response, b"A": notification_response, b"S": parameter_status,
}

__all__ = ["ClientEdge", "EncodingChange", "TranscodeError"]

EncodingChange = tuple[ClientEncoding, str]  # the encoding, and the name ParameterStatus reports


class ClientEdge:
    """Converts the messages of one session between its client encoding and UTF-8."""

    def __init__(self, encoding: ClientEncoding = UTF8, reported: str = "UTF8") -> None:
        self.startup: EncodingChange = (encoding, reported)
        self.inbound = encoding  # how the client's next message is read
        self.outbound = encoding  # how the next reply is written
        self.reported = reported
        self.report_due = False  # a ParameterStatus for client_encoding goes before the next Z
        self.copy_in: CopyTranscoder | None = None
        self.copy_in_failed = False
        self.copy_in_error: str | None = None  # the COPY cannot be converted: refuse its data
        self.copy_out: CopyTranscoder | None = None
        self._rows: DataRowTranscoder | None = None
        self._rows_for: ResultSet | None = None

    @property
    def active(self) -> bool:
        return not (self.inbound.is_noop and self.outbound.is_noop)

    # -- switching --------------------------------------------------------------------------
    def switch_inbound(self, change: EncodingChange) -> None:
        self.inbound = change[0]

    def switch_outbound(self, change: EncodingChange) -> None:
        encoding, reported = change
        if reported != self.reported:
            self.report_due = True
        self.outbound, self.reported = encoding, reported
        self._rows = self._rows_for = None

    def revert_inbound(self) -> None:
        """The statement that switched the inbound side failed: read as before."""
        self.inbound = self.outbound

    # -- client -> target -------------------------------------------------------------------
    def to_server(self, tag: bytes, raw: bytes, param_types: Sequence[int] = ()) -> bytes:
        """One client message in UTF-8 (``raw`` itself when nothing changes). CopyData may
        come back empty: the rest of a character is in the next one."""
        encoding = self.inbound
        if tag == b"B":
            return bind(encoding, raw, param_types)
        convert = _TO_SERVER.get(tag)
        if convert is not None:
            return convert(encoding, raw)
        if tag == b"d" and self.copy_in is not None:
            return self.copy_in.copy_data(raw) or b""
        return raw

    def copy_done(self) -> None:
        """CopyDone from the client: the stream must end on a character boundary."""
        if self.copy_in is not None:
            copy_in, self.copy_in = self.copy_in, None
            copy_in.finish()

    def start_copy_in(self, binary: bool) -> None:
        self.copy_in_failed = False
        self.copy_in_error = None
        self.copy_in = None
        if not self.inbound.is_noop:
            self.copy_in = CopyTranscoder(self.inbound, to_server=True, binary=binary)

    def start_copy_out(self, binary: bool) -> None:
        self.copy_out = None
        if not self.outbound.is_noop:
            self.copy_out = CopyTranscoder(self.outbound, to_server=False, binary=binary)

    # -- target -> client -------------------------------------------------------------------
    def to_client(self, raw: bytes, result: ResultSet | None) -> bytes:
        """One reply (already masked) in the client's encoding; TranscodeError when a character
        has no equivalent there."""
        encoding = self.outbound
        if encoding.is_noop:
            return raw
        tag = raw[:1]
        if tag == b"D":
            return self._data_rows(result).data_row(raw)
        convert = _TO_CLIENT.get(tag)
        if convert is not None:
            return convert(encoding, raw)
        if tag == b"d" and self.copy_out is not None:
            return self.copy_out.copy_data(raw) or b""
        return raw

    def for_client(self, raw: bytes) -> bytes:
        """The gateway's own last words (a FATAL, a notice): converted when they can be, sent as
        they are otherwise, since the session is ending anyway."""
        try:
            return self.to_client(raw, None)
        except TranscodeError:
            return raw

    def _data_rows(self, result: ResultSet | None) -> DataRowTranscoder:
        if self._rows is None or result is not self._rows_for:
            formats = [1 if b else 0 for b in result.binary] if result is not None else []
            types = list(result.types) if result is not None else []
            self._rows = DataRowTranscoder(self.outbound, formats, types)
            self._rows_for = result
        return self._rows
