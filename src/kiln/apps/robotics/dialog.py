"""Native file picker for `POST /assets/register-dialog` (only where a display exists)."""

from __future__ import annotations

import asyncio
import os

from kiln.apps.robotics.common import Unavailable


def display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _tk_pick() -> list[str] | None:
    """Blocking Tk dialog; None when the user cancels."""
    try:
        import tkinter
        from tkinter import filedialog
    except ImportError as exc:  # python built without Tk
        raise Unavailable(f"file dialog unavailable: tkinter is not installed ({exc})") from None
    try:
        root = tkinter.Tk()
    except tkinter.TclError as exc:
        raise Unavailable(f"file dialog unavailable: cannot open the display ({exc})") from None
    try:
        root.withdraw()
        root.attributes("-topmost", True)
        chosen = filedialog.askopenfilenames(
            parent=root, title="Register recordings",
            filetypes=[("ROS recordings", "*.bag *.mcap *.db3"), ("All files", "*")])
    finally:
        root.destroy()
    return list(chosen) if chosen else None


async def pick_files() -> list[str] | None:
    """Paths the user chose, or None when cancelled; 503 when no display is available."""
    if not display_available():
        raise Unavailable("no display available for a file dialog (DISPLAY and WAYLAND_DISPLAY are unset); "
                          "register recordings with POST /assets/register, /assets/scan-directory or /assets/upload")
    return await asyncio.to_thread(_tk_pick)
