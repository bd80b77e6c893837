"""Plugins arrive through entry points, exactly as the built-ins do."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.errors import PluginError
from gateway.hookspecs import hookimpl
from gateway.plugins import PluginHost

ROOT = Path(__file__).resolve().parents[2]


def install_throwaway_plugin(site: Path, module_source: str, *, name: str = "shoe_sizes") -> None:
    """Install a distribution the way pip would: a module plus a dist-info with entry points."""
    (site / f"wardgate_{name}.py").write_text(textwrap.dedent(module_source))
    dist = site / f"wardgate_{name}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: wardgate-{name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[wardgate]\n{name} = wardgate_{name}\n")


DETECTOR_PLUGIN = """
    import re
    from gateway.hookspecs import hookimpl
    from gateway.masking import Finding

    class ShoeSize:
        name = "shoe_size"
        _pattern = re.compile(r"EU-\\d{2}")

        def scan(self, text):
            if "EU-" not in text:
                return []
            return [Finding(m.start(), m.end(), "EU-??", self.name) for m in self._pattern.finditer(text)]

    @hookimpl
    def wardgate_detectors():
        return [ShoeSize()]
"""


def _config_dir(tmp_path: Path, detectors: list[str]) -> Path:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "10.toml").write_text(
        textwrap.dedent(
            f"""
            [gateway]
            data_dir = "state"
            [masking]
            detectors = {detectors!r}
            """
        ).replace("'", '"')
    )
    return conf


def test_a_third_party_detector_installed_by_entry_point_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    install_throwaway_plugin(site, DETECTOR_PLUGIN)
    monkeypatch.syspath_prepend(str(site))

    host = PluginHost()
    host.load_entry_points()
    host.check_pending()
    masker_detectors = host.select_detectors(["shoe_size", "credit_card"])
    from gateway.masking import Masker

    masker = Masker(masker_detectors)
    assert masker.mask_text("size EU-44, card 4111 1111 1111 1111") != "size EU-44, card 4111 1111 1111 1111"
    masked = masker.mask_text("size EU-44")
    assert masked == "size EU-??"


def test_config_check_sees_the_installed_plugin_and_names_unknown_detectors(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    install_throwaway_plugin(site, DETECTOR_PLUGIN)
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{ROOT}")
    ok = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "-c", str(_config_dir(tmp_path, ["shoe_size", "email"])),
         "config", "check"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    other = tmp_path / "other"
    other.mkdir()
    bad = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "-c", str(_config_dir(other, ["hat_size"])), "config", "check"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert bad.returncode == 2
    assert "hat_size" in bad.stderr and "shoe_size" in bad.stderr  # names the unknown and what exists


def test_a_plugin_that_fails_to_import_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    install_throwaway_plugin(site, "raise ImportError('needs libfoo')\n", name="broken")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(PluginError, match=r"'broken'.*needs libfoo"):
        PluginHost().load_entry_points()


def test_a_hook_wardgate_does_not_define_fails_fast() -> None:
    class Typo:
        @hookimpl
        def wardgate_detector(self) -> list[object]:  # missing "s"
            return []

    host = PluginHost()
    host.register(Typo(), "typo")
    with pytest.raises(PluginError, match="wardgate_detector"):
        host.check_pending()


def test_two_plugins_offering_one_protocol_is_an_error() -> None:
    class Conn:
        protocol = "postgres"

        async def handle(self, stream: object, ctx: object) -> None:
            return None

    class A:
        @hookimpl
        def wardgate_connectors(self) -> list[object]:
            return [Conn()]

    class B:
        @hookimpl
        def wardgate_connectors(self) -> list[object]:
            return [Conn()]

    host = PluginHost()
    host.register(A(), "a")
    host.register(B(), "b")
    with pytest.raises(PluginError, match="'postgres' is offered by both"):
        host.connectors()


def test_builtins_register_through_the_entry_point_group() -> None:
    host = PluginHost()
    host.load_entry_points()
    assert "postgres" in host.connectors()
    assert {"credit_card", "us_ssn", "email", "iban", "secrets"} <= set(host.detectors())
