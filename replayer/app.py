"""``wardgate replay``: the Textual application and the entry point the CLI calls."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from textual.app import App
from textual.binding import Binding, BindingType

from replayer.browser import BrowserScreen
from replayer.dialogs import HelpScreen
from replayer.index import INDEX_NAME, SessionIndex
from replayer.session_view import SessionScreen

PublicKeySource = Path | Ed25519PublicKey | None


def load_public_key(source: PublicKeySource) -> tuple[Ed25519PublicKey | None, str | None]:
    """The key that verifies seals, and a problem to show when there is none.

    ``source`` is a key, or the path of a PEM file: the exported public key
    (``<data_dir>/keys/recording-ed25519.pub.pem``) or, for an operator on the gateway host,
    the private key (only its public half is kept).
    """
    if source is None or isinstance(source, Ed25519PublicKey):
        return source, None if source is not None else "no public key given"
    try:
        pem = source.read_bytes()
    except OSError as exc:
        return None, f"public key {source} not readable: {exc.strerror or exc}"
    loaded: object
    try:
        loaded = load_pem_public_key(pem)
    except ValueError:
        try:
            loaded = load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            return None, f"{source} is not a PEM Ed25519 key"
        if isinstance(loaded, Ed25519PrivateKey):
            loaded = loaded.public_key()
    if not isinstance(loaded, Ed25519PublicKey):
        return None, f"{source} is not an Ed25519 key"
    return loaded, None


class ReplayApp(App[int]):
    """Browse recordings under ``root``; optionally open one file at start."""

    TITLE = "wardgate replay"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Help"),
        Binding("ctrl+q", "quit", "Quit", show=False),
    ]

    def __init__(
        self,
        root: Path,
        *,
        public_key: Ed25519PublicKey | None,
        index: SessionIndex,
        open_path: Path | None = None,
        export_dir: Path | None = None,
        blink: bool = True,
        key_problem: str | None = None,
    ) -> None:
        super().__init__()
        self.root = root
        self.public_key = public_key
        self.index = index
        self.open_path = open_path
        self.export_dir = export_dir if export_dir is not None else Path.cwd()
        self.blink = blink
        self.key_problem = key_problem
        self.last_export: Path | None = None

    def on_mount(self) -> None:
        self.push_screen(BrowserScreen())
        if self.open_path is not None:
            self.push_screen(SessionScreen(self.open_path))
        if self.key_problem:
            self.notify(f"{self.key_problem}: signatures are not checked (UNSIGNED)",
                        severity="warning", markup=False, timeout=8)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_quit(self) -> None:  # type: ignore[override]
        self.exit(0)


def main(
    path: Path | None,
    recordings_dir: Path,
    public_key: PublicKeySource,
    *,
    data_dir: Path | None = None,
    export_dir: Path | None = None,
) -> int:
    """Run the replayer; returns the process exit code.

    path:           a recording file or a directory of recordings; None means recordings_dir.
    recordings_dir: the gateway's recordings (``<data_dir>/recordings``).
    public_key:     an Ed25519 public key, a PEM file holding one, or None (then every
                    intact file shows as UNSIGNED).
    data_dir:       where the session index is cached (``replayer-index.sqlite3``); None keeps
                    it in memory for this run.
    export_dir:     where exports are written (default: the current directory).
    """
    target = path if path is not None else recordings_dir
    if path is not None and not path.exists():
        # The default directory may not exist before the first session: that is an empty
        # browser, not an error.
        print(f"wardgate: error: {path} does not exist; give a .wgrec file or a directory "
              "of recordings (`wardgate recordings list` shows them)", file=sys.stderr)
        return 2
    key, problem = load_public_key(public_key)
    index = SessionIndex(data_dir / INDEX_NAME if data_dir is not None else None)
    try:
        app = ReplayApp(
            target.parent if target.is_file() else target,
            public_key=key,
            index=index,
            open_path=target if target.is_file() else None,
            export_dir=export_dir,
            key_problem=problem,
        )
        code = app.run()
    finally:
        index.close()
    return code if isinstance(code, int) else 0
