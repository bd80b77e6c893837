"""The trio server: listeners on port 0, connection boundaries, caps and graceful shutdown.

A probe connector registered as a plugin stands in for a protocol so the core is tested alone.
"""

from __future__ import annotations

import dataclasses
import errno
import socket
from pathlib import Path

import pytest
import trio

from gateway.config import ListenerConfig, LimitsConfig, GatewaySettings, load_config
from gateway.connector import ConnectionContext
from gateway.errors import GatewayError
from gateway.hookspecs import hookimpl
from gateway.model import Identity, Target
from gateway.plugins import PluginHost
from gateway.recording import read_recording
from gateway.runtime import Gateway, build_gateway
from gateway.server import ServerState, _bind_error, serve
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]


class ProbeConnector:
    """Line protocol: 'echo X' -> 'X', 'boom' -> raises, 'session' -> opens a recorded session
    and waits until the client closes."""

    protocol = "probe"

    def __init__(self) -> None:
        self.sessions_closed = 0

    async def handle(self, stream: trio.abc.Stream, ctx: ConnectionContext) -> None:
        data = await stream.receive_some(1024)
        if data.startswith(b"echo "):
            await stream.send_all(data[5:])
        elif data == b"boom":
            raise RuntimeError("connector bug")
        elif data == b"session":
            ident = Identity("probe-user", frozenset({"g"}), expires_at=4e9, issuer="test")
            target = Target("probe-target", "probe", "127.0.0.1", 1)
            async with ctx.gateway.session(identity=ident, target=target, protocol="probe", peer=ctx.peer) as s:
                s.record("note", {"text": "hello"}, flush=True)
                await stream.send_all(b"ready")
                try:
                    while await stream.receive_some(1024):
                        pass
                finally:
                    self.sessions_closed += 1


class ProbePlugin:
    def __init__(self, connector: ProbeConnector) -> None:
        self.connector = connector

    @hookimpl
    def wardgate_connectors(self) -> list[ProbeConnector]:
        return [self.connector]


def make_gateway(tmp_path: Path, *, max_connections: int = 100, grace: float = 5.0) -> tuple[Gateway, ProbeConnector]:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "10.toml").write_text('[gateway]\ndata_dir = "state"\n')
    config = load_config(conf)
    config = dataclasses.replace(
        config,
        listeners={"probe": ListenerConfig(name="probe", protocol="probe", host="127.0.0.1", port=0)},
        targets={},
        limits=dataclasses.replace(LimitsConfig(), max_connections=max_connections),
        gateway=GatewaySettings(shutdown_grace=grace),
    )
    host = PluginHost()
    host.load_entry_points()
    connector = ProbeConnector()
    host.register(ProbePlugin(connector), "probe")
    return build_gateway(config, plugins=host), connector


async def _talk(port: int, payload: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(payload)
        chunks = []
        while data := await stream.receive_some(1024):
            chunks.append(data)
        return b"".join(chunks)


async def test_a_connector_error_closes_only_that_connection(tmp_path: Path) -> None:
    gw, _ = make_gateway(tmp_path)
    async with trio.open_nursery() as nursery:
        state: ServerState = await nursery.start(serve, gw)
        port = state.addresses["probe"][1]
        with trio.fail_after(10):
            assert await _talk(port, b"boom") == b""
            assert await _talk(port, b"echo still serving") == b"still serving"
        state.shutdown()


async def test_connections_over_the_cap_are_refused_and_others_unaffected(tmp_path: Path) -> None:
    gw, _ = make_gateway(tmp_path, max_connections=1)
    async with trio.open_nursery() as nursery:
        state: ServerState = await nursery.start(serve, gw)
        port = state.addresses["probe"][1]
        with trio.fail_after(10):
            holder = await trio.open_tcp_stream("127.0.0.1", port)
            await holder.send_all(b"session")
            assert await holder.receive_some(1024) == b"ready"
            assert await _talk(port, b"echo refused?") == b""
            await holder.aclose()
            while state.connections:
                await trio.sleep(0.01)
            assert await _talk(port, b"echo back") == b"back"
        state.shutdown()


async def test_graceful_shutdown_stops_accepting_and_closes_recordings(tmp_path: Path) -> None:
    gw, connector = make_gateway(tmp_path, grace=0.2)
    async with trio.open_nursery() as nursery:
        state: ServerState = await nursery.start(serve, gw)
        port = state.addresses["probe"][1]
        with trio.fail_after(10):
            client = await trio.open_tcp_stream("127.0.0.1", port)
            await client.send_all(b"session")
            assert await client.receive_some(1024) == b"ready"
            state.shutdown()
            # The session outlives the grace period and is cancelled; its recording is signed.
            while connector.sessions_closed == 0:
                await trio.sleep(0.01)
            with pytest.raises(OSError):
                await trio.open_tcp_stream("127.0.0.1", port)
            await client.aclose()
    files = gw.recordings.list()
    assert len(files) == 1
    rec = read_recording(files[0], public_key=gw._signing_key.public_key())
    assert rec.integrity.status == "verified"
    assert [r.kind for r in rec.records] == ["note"]
    assert rec.end is not None


# --- a port that cannot be bound ------------------------------------------------------------


def _conf_with_listeners(tmp_path: Path, ports: dict[str, int], admin: int | None = None) -> Path:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    text = '[gateway]\ndata_dir = "state"\n'
    for name, port in ports.items():
        text += f'[listeners.{name}]\nprotocol = "postgres"\nbind = "127.0.0.1:{port}"\n'
    if admin is not None:
        text += f'[admin]\nbind = "127.0.0.1:{admin}"\n'
    (conf / "10.toml").write_text(text)
    return conf


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def test_a_listener_port_in_use_stops_serve_naming_listener_address_and_key(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        free = free_port()
        conf = _conf_with_listeners(tmp_path, {"first": free, "pg": busy})
        gw = build_gateway(load_config(conf))
        recovered: list[bool] = []
        assert gw.approvals is not None
        gw.approvals.recover = lambda: recovered.append(True)  # type: ignore[method-assign]
        with pytest.raises(GatewayError) as info:
            await serve(gw)
        await gw.aclose()
    assert str(info.value) == (
        f'listener "pg" cannot listen on 127.0.0.1:{busy}: address already in use (another '
        f"wardgate or PostgreSQL?); stop that process or change [listeners.pg] bind in "
        f"{conf}/10.toml"
    )
    assert _port_is_free(free)  # the listener bound before it is not left open
    assert recovered == []  # nothing of a gateway still running there was touched


async def test_the_admin_port_in_use_stops_serve_naming_the_admin_bind(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        free = free_port()
        conf = _conf_with_listeners(tmp_path, {"pg": free}, admin=busy)
        gw = build_gateway(load_config(conf))
        with pytest.raises(GatewayError) as info:
            await serve(gw)
        await gw.aclose()
    assert str(info.value) == (
        f"admin API cannot listen on 127.0.0.1:{busy}: address already in use (another "
        f"wardgate?); stop that process or change [admin] bind in {conf}/10.toml"
    )
    assert _port_is_free(free)


async def test_an_address_not_on_this_machine_is_named_with_the_fix(tmp_path: Path) -> None:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "10.toml").write_text(
        '[gateway]\ndata_dir = "state"\n'
        '[listeners.pg]\nprotocol = "postgres"\nbind = "192.0.2.1:6432"\n'  # TEST-NET-1
    )
    gw = build_gateway(load_config(conf))
    with pytest.raises(GatewayError) as info:
        await serve(gw)
    await gw.aclose()
    assert str(info.value) == (
        'listener "pg" cannot listen on 192.0.2.1:6432: cannot assign requested address '
        "(192.0.2.1 is not an address of this machine); use one of this machine's addresses "
        f"(or 0.0.0.0) in [listeners.pg] bind in {conf}/10.toml"
    )


BIND_ERRORS = [
    pytest.param(
        OSError(errno.EACCES, "Permission denied"), 80,
        'listener "pg" cannot listen on 127.0.0.1:80: permission denied (ports below 1024 need '
        "root or CAP_NET_BIND_SERVICE); use a port above 1023 in [listeners.pg] bind in F.toml",
        id="privileged port",
    ),
    pytest.param(
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"), 6432,
        'listener "pg" cannot listen on 127.0.0.1:6432: cannot resolve host "127.0.0.1" (Name '
        "or service not known); use an IP address or a resolvable name in [listeners.pg] bind "
        "in F.toml",
        id="unresolvable host",
    ),
    pytest.param(
        OSError(errno.EMFILE, "Too many open files"), 6432,
        'listener "pg" cannot listen on 127.0.0.1:6432: too many open files; check '
        "[listeners.pg] bind in F.toml",
        id="anything else",
    ),
]


@pytest.mark.parametrize(("exc", "port", "line"), BIND_ERRORS)
def test_bind_errors_read_as_one_line_with_the_fix(exc: OSError, port: int, line: str) -> None:
    config = dataclasses.replace(
        load_config(REPO / "conf.d", environ={}),
        origins={("listeners", "pg", "bind"): "F.toml"},
    )
    assert str(_bind_error(config, "pg", "127.0.0.1", port, 'listener "pg"', "postgres", exc)) == line
