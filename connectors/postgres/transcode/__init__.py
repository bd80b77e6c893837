"""Client encodings at the gateway's client edge, sans-IO.

Targets always run with ``client_encoding=UTF8`` (the parser and masker read UTF-8 only); a
client may select any encoding PostgreSQL supports, and the relay converts at its edge with this
package: client bytes -> UTF-8 toward the target, UTF-8 -> client bytes back. The conversion is
PostgreSQL's own, measured (``encoding``), and every failure is a ``TranscodeError`` carrying the
SQLSTATE and wording the server would have used, for a native ErrorResponse.

Per message (``raw`` = the framed message, as ``next_raw()`` returns it)::

    enc = client_encoding("SJIS")          # SET client_encoding / startup parameter
    raw = query(enc, raw)                  # 'Q'      frontend
    raw = parse(enc, raw)                  # 'P'
    raw = bind(enc, raw, param_types)      # 'B'
    raw = describe(enc, raw) / close(enc, raw) / execute(enc, raw) / copy_fail(enc, raw)
    copy_in = CopyTranscoder(enc, to_server=True)          # after CopyInResponse
    raw = copy_in.copy_data(raw)           # 'd' (None: nothing complete yet); finish() at 'c'

    raw = row_description(enc, raw)        # 'T'      backend
    rows = DataRowTranscoder(enc, formats, type_oids); raw = rows.data_row(raw)   # 'D'
    raw = command_complete(enc, raw) / error_response(enc, raw) / notice_response(enc, raw)
    raw = notification_response(enc, raw) / parameter_status(enc, raw)
    copy_out = CopyTranscoder(enc, to_server=False)        # after CopyOutResponse
"""

from __future__ import annotations

from .copy import CopyTranscoder
from .encoding import (
    REFUSED,
    SUPPORTED,
    UTF8,
    ClientEncoding,
    TranscodeError,
    canonical_name,
    client_encoding,
    normalise_name,
)
from .messages import (
    DataRowTranscoder,
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
from .values import convert_binary, needs_conversion

__all__ = [
    "REFUSED",
    "SUPPORTED",
    "UTF8",
    "ClientEncoding",
    "CopyTranscoder",
    "DataRowTranscoder",
    "TranscodeError",
    "bind",
    "canonical_name",
    "client_encoding",
    "close",
    "command_complete",
    "convert_binary",
    "copy_fail",
    "describe",
    "error_response",
    "execute",
    "needs_conversion",
    "normalise_name",
    "notice_response",
    "notification_response",
    "parameter_status",
    "parse",
    "query",
    "row_description",
]
