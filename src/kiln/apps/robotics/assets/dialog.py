"""Native file picker for `POST /assets/register-dialog` (only where a display exists).

The Tk dialog runs in a child process (`python -m kiln.apps.robotics.assets.dialog`), as in the
reference: Tk wants its own main thread, and a display problem must never take the server
down. The child prints a JSON list of the chosen paths (`null` when the user cancels);
exit status 3 means "no usable dialog" with the reason on stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from kiln.apps.robotics.common import Unavailable

UNAVAILABLE_EXIT = 3
TITLE = "Register recordings"


def display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _tk_pick() -> list[str] | None:
    """Blocking Tk dialog in this process; None when the user cancels."""
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
            parent=root, title=TITLE, filetypes=[("ROS recordings", "*.bag *.mcap *.db3"), ("All files", "*")]
        )
    finally:
        root.destroy()
    return list(chosen) if chosen else None


async def pick_files(timeout: float = 900.0) -> list[str] | None:
    """Paths the user chose, or None when cancelled; 503 when no dialog can be shown."""
    if not display_available():
        raise Unavailable(
            "no display available for a file dialog (DISPLAY and WAYLAND_DISPLAY are unset); "
            "register recordings with POST /assets/register, /assets/scan-directory or /assets/upload"
        )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kiln.apps.robotics.assets.dialog",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError):
        proc.kill()
        await proc.wait()
        raise Unavailable("the file dialog got no answer in time") from None
    if proc.returncode == UNAVAILABLE_EXIT:
        raise Unavailable(err.decode(errors="replace").strip() or "file dialog unavailable")
    if proc.returncode != 0:
        raise Unavailable(f"file dialog failed (exit status {proc.returncode})")
    chosen = json.loads(out.decode() or "null")
    return [str(p) for p in chosen] if chosen else None


def main() -> int:
    try:
        chosen = _tk_pick()
    except Unavailable as exc:
        print(str(exc), file=sys.stderr)
        return UNAVAILABLE_EXIT
    print(json.dumps(chosen))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
