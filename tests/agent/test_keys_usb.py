"""ADB keys, the phone's RSA prompt, and USB: what a user meets connecting a real phone the first time.

* ``adbkey`` without ``adbkey.pub`` beside it: the public key is derived (adb-shell's key helper).
* A named private key that is missing or not a key: one line naming ``adb keygen`` and the path.
* The "Allow USB debugging?" prompt: the agent says to tap *Allow*, waits ``--auth-timeout-s``
  (adb-shell's ``auth_timeout_s``), and says what to do when nobody did.
* USB: an error that says no phone is attached, or that the usb extra is missing — no traceback.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from adb_shell.auth.keygen import keygen

from device_agent.loopback.adbd import LoopbackAdbd
from device_agent.errors import ConfigError
from device_agent.loopback.fakephone import load_phone
from device_agent.config import AgentConfig
from device_agent.jobloop import Agent
from device_agent.platforms.adb import AdbDevice, DeviceNotAuthorized
from tests.agent.agent_support import agent_cmd, env

PROMPT = "tap *Allow*"


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(agent_cmd(*args), capture_output=True, text=True, env=env(), timeout=timeout)


def _adb_keys(daemon: LoopbackAdbd) -> str:
    path = daemon.sandbox.root / ".phone" / "adb_keys"
    return path.read_text() if path.exists() else ""


def test_a_missing_public_key_is_derived_from_the_private_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = tmp_path / "adbkey"
    keygen(str(key))
    pub = Path(f"{key}.pub")
    original = pub.read_text().split()[0]  # base64 of the Android public key; the rest is user@host
    pub.unlink()  # copied from another computer without it
    caplog.set_level(logging.INFO)
    with LoopbackAdbd(tmp_path / "phone", load_phone("generic"), auth_required=True) as daemon:
        dev = AdbDevice(daemon.serial, key_path=key, auth_timeout_s=10)
        try:
            assert dev.run("echo in").output == "in\n"
        finally:
            dev.close()
        assert original in _adb_keys(daemon)  # the phone was offered the right public key, and took it
    assert pub.read_text().split()[0] == original  # written beside the private key, as adb keygen writes it
    assert f"{pub} was missing: derived it from {key}" in caplog.text


def test_a_named_private_key_that_is_missing_or_not_a_key_is_one_line_naming_adb_keygen(tmp_path: Path) -> None:
    with LoopbackAdbd(tmp_path / "phone", load_phone("generic")) as daemon:
        missing = tmp_path / "keys" / "adbkey"
        r = _run("info", "--serial", daemon.serial, "--adb-key", str(missing))
        assert r.returncode == 2, r.stderr
        assert f"ADB private key {missing} not found" in r.stderr and f"adb keygen {missing}" in r.stderr
        assert "Traceback" not in r.stderr and not missing.exists()  # no stand-in key made where the user pointed
        garbage = tmp_path / "notakey"
        garbage.write_text("ssh-ed25519 AAAA user@host\n")
        r = _run("info", "--serial", daemon.serial, "--adb-key", str(garbage))
        assert r.returncode == 2 and f"{garbage} is not an ADB private key" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr


def test_the_rsa_prompt_is_announced_and_waited_for_as_long_as_asked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = tmp_path / "adbkey"
    keygen(str(key))
    caplog.set_level(logging.INFO)
    # A phone whose user never taps Allow: adb-shell waits auth_timeout_s for the phone's CNXN, then gives up.
    with LoopbackAdbd(tmp_path / "phone", load_phone("generic"), auth_required=True, accept_new_keys=False) as daemon:
        dev = AdbDevice(daemon.serial, key_path=key, auth_timeout_s=1.5)
        start = time.monotonic()
        with pytest.raises(DeviceNotAuthorized) as err:
            dev.connect()
        waited = time.monotonic() - start
        # The wait is the one asked for: not adb-shell's default, not the 10 s this agent used to allow.
        assert 1.5 <= waited < 8, waited
        assert "within 1.5 s" in str(err.value) and PROMPT in str(err.value) and "--auth-timeout-s" in str(err.value)
        assert f"{PROMPT} on the phone" in caplog.text and "Always allow from this computer" in caplog.text
        assert "waiting 1.5 s" in caplog.text
        # Through the agent: the phone answered, so no "check the address" advice is added.
        agent = Agent(AdbDevice(daemon.serial, key_path=key, auth_timeout_s=1), AgentConfig(cache_dir=tmp_path / "c"))
        with pytest.raises(DeviceNotAuthorized) as err:
            agent.connect()
        assert "check the address" not in str(err.value) and PROMPT in str(err.value)
    # A phone whose user taps Allow: the prompt is announced once; a known key is not prompted again.
    caplog.clear()
    with LoopbackAdbd(tmp_path / "phone2", load_phone("generic"), auth_required=True) as daemon:
        dev = AdbDevice(daemon.serial, key_path=key)
        dev.connect()
        assert caplog.text.count(PROMPT) == 1 and "waiting 60 s" in caplog.text  # the default: 60 s
        dev.reconnect()
        assert caplog.text.count(PROMPT) == 1
        dev.close()


def test_the_auth_timeout_reaches_the_cli(tmp_path: Path) -> None:
    key = tmp_path / "adbkey"
    keygen(str(key))
    with LoopbackAdbd(tmp_path / "phone", load_phone("generic"), auth_required=True, accept_new_keys=False) as daemon:
        start = time.monotonic()
        r = _run("info", "--serial", daemon.serial, "--adb-key", str(key), "--auth-timeout-s", "1")
        took = time.monotonic() - start
    assert r.returncode == 3, r.stderr
    assert took < 9, took  # the 1 s asked for (plus the interpreter's start), not a fixed 10 s or more
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert PROMPT in lines[0] and "waiting 1 s" in lines[0]  # said while waiting...
    assert lines[-1].startswith("device-agent: error: ") and "within 1 s" in lines[-1]  # ...and what to do after
    assert "Traceback" not in r.stderr


def test_usb_with_no_phone_attached_says_so(tmp_path: Path) -> None:
    pytest.importorskip("usb1", reason="the usb extra (pip install 'hwnas[usb]') is not installed")
    r = _run("info", "--usb", "--adb-key", str(tmp_path / "k"))
    # the key is looked at first: a missing named key is the first thing to fix
    assert r.returncode == 2 and "adb keygen" in r.stderr
    key = tmp_path / "adbkey"
    keygen(str(key))
    r = _run("info", "--usb", "--adb-key", str(key))
    assert r.returncode == 3, r.stderr
    assert "cannot connect to a phone on USB: no ADB device is attached" in r.stderr and "adb devices" in r.stderr
    assert "Traceback" not in r.stderr and "check the address" not in r.stderr
    r = _run("info", "--serial", "R58N12ABCDE", "--adb-key", str(key))  # a USB serial: the USB path as well
    assert r.returncode == 3 and "R58N12ABCDE on USB: no ADB device with that serial" in r.stderr, r.stderr
    r = _run("info", "--usb", "--serial", "192.168.1.20:5555")
    assert r.returncode == 2 and "--usb takes a USB serial" in r.stderr


def test_usb_without_the_usb_extra_names_the_install(tmp_path: Path) -> None:
    key = tmp_path / "adbkey"
    keygen(str(key))
    # What Python sees when libusb1 is not installed: its import fails (adb-shell then has no USB transport).
    code = (
        "import sys; sys.modules['usb1'] = None; from device_agent.cli import main; "
        f"sys.argv = ['device-agent', 'info', '--usb', '--adb-key', {str(key)!r}]; main()"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=120)
    assert r.returncode == 2, r.stderr
    assert "pip install 'hwnas[usb]'" in r.stderr and "adb tcpip" in r.stderr and "Traceback" not in r.stderr


def test_a_device_needs_an_address_or_usb() -> None:
    with pytest.raises(ConfigError, match="--usb"):
        AdbDevice(None)
