"""The running gateway: every engine built once from the configuration, shared by connections."""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio
from OpenSSL import SSL

import gateway
from gateway.approvals import ApprovalService, SQLiteApprovalStore
from gateway.auth import AuthSettings, EmbeddedIssuer, TokenValidator, build_validator
from gateway.certs import ensure_self_signed
from gateway.config import Config, check_protocols
from gateway.connector import Connector
from gateway.errors import AuthenticationError, ConfigError, GatewayError, RecordingError
from gateway.masking import Masker
from gateway.model import Identity, Target
from gateway.plugins import PluginHost
from gateway.policy import PolicyEngine
from gateway.recording import (
    RecordingStore,
    RecordingWriter,
    key_id,
    load_or_create_signing_key,
)
from gateway.session import Session
from gateway.tls import client_context, server_context

log = logging.getLogger("wardgate")


class SessionLimitError(Exception):
    """Too many sessions for one identity; the message is safe to show the caller."""


@dataclass
class Gateway:
    config: Config
    plugins: PluginHost
    connectors: dict[str, Connector]
    validator: TokenValidator
    issuer: EmbeddedIssuer | None
    policy: PolicyEngine
    masker: Masker
    recordings: RecordingStore
    cert_file: Path
    key_file: Path
    approvals: ApprovalService | None = None
    clock: Callable[[], float] = time.time
    _signing_key: Any = None
    _server_contexts: dict[tuple[bytes, ...], SSL.Context] = field(default_factory=dict)
    _sessions_by_subject: Counter[str] = field(default_factory=Counter)
    active_sessions: int = 0

    # -- TLS --------------------------------------------------------------------------------
    def server_tls(self, alpn: Sequence[bytes] = ()) -> SSL.Context:
        key = tuple(alpn)
        ctx = self._server_contexts.get(key)
        if ctx is None:
            ctx = server_context(str(self.cert_file), str(self.key_file), alpn=alpn)
            self._server_contexts[key] = ctx
        return ctx

    def client_tls(self, target: Target, alpn: Sequence[bytes] = ()) -> SSL.Context | None:
        if target.tls == "disable":
            return None
        return client_context(target.tls, ca_file=target.ca_file, alpn=alpn)

    # -- identity ---------------------------------------------------------------------------
    async def authenticate(self, token: str) -> Identity:
        """Validate a token within the configured auth deadline.

        Raises :class:`AuthenticationError` (safe to show) on any failure, including a slow
        identity provider.
        """
        with trio.move_on_after(self.config.limits.auth_timeout):
            return await self.validator.validate(token)
        raise AuthenticationError("token could not be validated in time")

    def target(self, name: str) -> Target | None:
        return self.config.targets.get(name)

    # -- sessions ---------------------------------------------------------------------------
    @asynccontextmanager
    async def session(
        self, *, identity: Identity, target: Target, protocol: str, peer: str,
        client: dict[str, Any] | None = None,
    ) -> AsyncIterator[Session]:
        """Open a recorded session; closes and signs the recording however the block ends.

        Raises :class:`SessionLimitError` over the per-identity cap and
        :class:`RecordingError` when the recording cannot be created (fail closed: no session
        without a recording).
        """
        cap = self.config.limits.max_sessions_per_identity
        if self._sessions_by_subject[identity.subject] >= cap:
            raise SessionLimitError(
                f"too many concurrent sessions for {identity.subject!r} (limit {cap})"
            )
        started = self.clock()
        session_id = secrets.token_hex(8)
        header = {
            "session_id": session_id,
            "identity": identity.to_record(),
            "target": target.to_record(),
            "protocol": protocol,
            "peer": peer,
            "client": client or {},
            "started": started,
            "started_iso": datetime.fromtimestamp(started, UTC).isoformat(),
            "gateway_version": gateway.__version__,
            "result_row_cap": self.config.recording.result_row_cap,
        }
        path = self.recordings.new_path(session_id, started)
        writer = RecordingWriter.create(path, header, self._signing_key)
        sess = Session(
            session_id=session_id, identity=identity, target=target, protocol=protocol,
            peer=peer, recorder=writer, policy=self.policy, masker=self.masker,
            plugins=self.plugins, result_row_cap=self.config.recording.result_row_cap,
            clock=self.clock, approvals=self.approvals,
        )
        self._sessions_by_subject[identity.subject] += 1
        self.active_sessions += 1
        self.plugins.notify("wardgate_session_started", session=sess.describe())
        reason = "closed"
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._flush_periodically, writer)
                try:
                    yield sess
                finally:
                    nursery.cancel_scope.cancel()
        except BaseException as exc:
            reason = _end_reason(exc)
            raise
        finally:
            self._sessions_by_subject[identity.subject] -= 1
            if self._sessions_by_subject[identity.subject] <= 0:
                del self._sessions_by_subject[identity.subject]
            self.active_sessions -= 1
            try:
                writer.close({"reason": reason, "commands": sess.commands, "denied": sess.denied})
            except RecordingError:
                log.exception("session %s: recording could not be closed", session_id)
            ended = sess.describe() | {"reason": reason}
            self.plugins.notify("wardgate_session_ended", session=ended)

    async def aclose(self) -> None:
        """Release what the gateway holds open (the approval store)."""
        if self.approvals is not None:
            await self.approvals.aclose()

    async def _flush_periodically(self, writer: RecordingWriter) -> None:
        # The design promises a crash loses at most the last second of a session.
        interval = self.config.recording.flush_interval
        while True:
            await trio.sleep(interval)
            try:
                writer.flush()
            except RecordingError:
                # The next record() in the connector raises too and ends the session natively;
                # stop trying here so one broken disk does not log every second.
                log.error("recording %s could not be flushed", writer.path)
                return


def _end_reason(exc: BaseException) -> str:
    """What the recording's end record says when a session did not end by itself."""
    leaves: list[BaseException] = []
    stack = [exc]
    while stack:
        e = stack.pop()
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)
        else:
            leaves.append(e)
    if leaves and all(isinstance(e, trio.Cancelled) for e in leaves):
        return "cancelled: the gateway was shutting down"
    first = next((e for e in leaves if not isinstance(e, trio.Cancelled)), exc)
    return f"error: {type(first).__name__}: {first}"[:500]


def build_gateway(config: Config, *, plugins: PluginHost | None = None) -> Gateway:
    """Everything that can fail at start-up fails here, with an operator-facing message."""
    host = plugins or PluginHost()
    if plugins is None:
        host.load_entry_points()
    host.check_pending()
    host.configure(config)
    connectors = host.connectors()
    check_protocols(config, set(connectors))
    detectors = host.select_detectors(config.masking.detectors)

    data_dir = config.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"data_dir {data_dir} cannot be created: {exc}", key="gateway") from exc

    if config.tls.cert_file and config.tls.key_file:
        cert_file, key_file = config.tls.cert_file, config.tls.key_file
        for p in (cert_file, key_file):
            if not p.is_file():
                raise ConfigError(f"{p} does not exist", key="tls")
    else:
        cert_file, key_file = ensure_self_signed(data_dir / "tls")

    settings = AuthSettings(
        issuer=config.auth.issuer,
        audience=config.auth.audience,
        groups_claim=config.auth.groups_claim,
        jwks_file=config.auth.jwks_file,
        leeway=config.auth.leeway,
    )
    validator, issuer = build_validator(settings, data_dir)
    signing_key = load_or_create_signing_key(data_dir)
    policy = PolicyEngine(config.rules, config.policy_default)
    approvals = ApprovalService(
        SQLiteApprovalStore.in_data_dir(data_dir),
        config.approvals,
        rules=config.rules,
        plugins=host,
        known_targets=set(config.targets),
        known_grants=policy.grant_names,
    )
    gw = Gateway(
        config=config,
        plugins=host,
        connectors=connectors,
        validator=validator,
        issuer=issuer,
        policy=policy,
        masker=Masker(detectors, config.masking.columns),
        recordings=RecordingStore(data_dir / "recordings"),
        cert_file=cert_file,
        key_file=key_file,
        approvals=approvals,
    )
    gw._signing_key = signing_key
    log.debug("recording key %s", key_id(signing_key.public_key()))
    return gw


__all__ = ["Gateway", "GatewayError", "SessionLimitError", "build_gateway"]
