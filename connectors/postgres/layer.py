"""The PostgreSQL relay as a sans-IO layer: client bytes and server bytes in; bytes to each side,
holds for approval, stalls and an end out. The trio driver (``relay.py``) owns the sockets.

Client side: every message is judged before it is forwarded. A denied one is replaced by a
placeholder the server cannot run (a statement that fails to parse), so the server answers exactly
where the denied message would have been answered (its error aborts the transaction and, in the
extended protocol, skips to Sync, as a real permission error does), and the server side puts the
denial in place of that error. Replies therefore stay in order however deeply a client pipelines.

What a name (prepared statement, portal) holds is tracked in :mod:`.tracking` and changes only when
the server confirms it; Execute, EXECUTE and FETCH are judged as what the name holds then, and a
lookup that depends on an earlier, unanswered block stalls until the server has answered it.

Server side: replies are matched to requests as the server produces them (including skipping to
Sync after an error in the extended protocol, where Query and FunctionCall are skipped too); rows,
notices, notifications and COPY data are masked; every ParameterStatus is checked against what the
parser assumes.
"""


from __future__ import annotations

from .client_side import ClientSide
from .relaystate import (
    AMBIGUOUS_RULE,
    DENIED_PLACEHOLDER,
    PLACEHOLDER_STATEMENT,
    End,
    Hold,
    Step,
)
from .server_side import ServerSide

__all__ = [
    "AMBIGUOUS_RULE",
    "DENIED_PLACEHOLDER",
    "PLACEHOLDER_STATEMENT",
    "End",
    "Hold",
    "RelayLayer",
    "Step",
]


class RelayLayer(ClientSide, ServerSide):
    """One session's relay: ``client_data``/``decided`` judge what the client sends,
    ``server_data`` matches, masks and converts what the target answers."""
