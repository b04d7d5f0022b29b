"""The native file dialog for real: Tk under Xvfb, driven with xdotool like a user would.

Skipped (with the reason) where Xvfb or xdotool is not installed:
`apt-get install -y xvfb xdotool`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from kiln.apps.robotics.assets import dialog
from tests.apps.robotics.api_helpers import recording, register

needs_xvfb = pytest.mark.skipif(
    shutil.which("Xvfb") is None or shutil.which("xdotool") is None,
    reason="Xvfb and xdotool are not installed (apt-get install -y xvfb xdotool)",
)


@pytest.fixture
def xvfb(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private X display; DISPLAY points at it for the test (and the dialog's child)."""
    read, write = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as fh:
        number = fh.readline().strip()
    assert number, "Xvfb did not report its display"
    display = f":{number}"
    monkeypatch.setenv("DISPLAY", display)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    try:
        yield display
    finally:
        proc.terminate()
        proc.wait(10)


def _xdotool(*args: str) -> str:
    return subprocess.run(["xdotool", *args], check=True, capture_output=True, text=True, timeout=20).stdout


def _answer_dialog(keys: list[tuple[str, str]]) -> None:
    """Wait for the dialog window, focus it, then type text / press keys in order."""
    window = _xdotool("search", "--sync", "--name", dialog.TITLE).split()[0]
    _xdotool("windowfocus", "--sync", window)
    for action, value in keys:
        if action == "type":
            _xdotool("type", "--delay", "5", value)
        else:
            _xdotool("key", value)


@needs_xvfb
async def test_dialog_registers_what_the_user_picks(client, tmp_path, xvfb):
    picked = tmp_path / "picks"
    first = recording(picked, "first.bag")
    recording(picked, "second.mcap", "mcap")
    already = await register(client, first)
    post = asyncio.create_task(client.post("/assets/register-dialog"))
    # go into the folder, then pick two files (the entry takes a list of names)
    await asyncio.to_thread(
        _answer_dialog,
        [("type", f"{picked}/"), ("key", "Return"), ("type", "first.bag second.mcap"), ("key", "Return")],
    )
    r = await asyncio.wait_for(post, 30)
    body = r.json()
    assert r.status_code == 200 and body["canceled"] is False, r.text
    assert [a["file_name"] for a in body["registered_assets"]] == ["second.mcap"]
    assert body["skipped"] == [
        {"detail": f"asset already registered: {already['file_path']}", "file_path": str(first), "reason": "duplicate"}
    ]


@needs_xvfb
async def test_dialog_cancel(client, xvfb):
    post = asyncio.create_task(client.post("/assets/register-dialog"))
    await asyncio.to_thread(_answer_dialog, [("key", "Escape")])
    r = await asyncio.wait_for(post, 30)
    assert r.status_code == 200 and r.json() == {"canceled": True, "registered_assets": [], "skipped": []}


async def test_dialog_on_a_display_that_cannot_be_opened(client, monkeypatch):
    monkeypatch.setenv("DISPLAY", ":31999")  # set, but no X server behind it
    r = await client.post("/assets/register-dialog")
    assert r.status_code == 503 and "cannot open the display" in r.json()["detail"]
