"""Rebuild ``common-passwords.txt``, the blocklist shipped with Kiln's password policy.

Run once by a maintainer (not at runtime), with a Django wheel fetched by pip::

    pip download --no-deps "django==5.2.19" -d /tmp/dj
    python -m kiln.core.auth.data.build_common_passwords /tmp/dj/django-5.2.19-py3-none-any.whl

Source: ``django/contrib/auth/common-passwords.txt.gz`` in that wheel (BSD-3-Clause, Django
Software Foundation; the list is Royce Williams' 20,000 most common passwords, lower-cased and
de-duplicated by Django, most common first). Only the entries a policy of 8 to 128 characters
can meet are kept (8,354 of 19,640), in the list's order.
"""

from __future__ import annotations

import gzip
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).with_name("common-passwords.txt")
MEMBER = "django/contrib/auth/common-passwords.txt.gz"


def build(wheel: Path, out: Path = OUT, *, min_length: int = 8, max_length: int = 128) -> int:
    with zipfile.ZipFile(wheel) as zf:
        text = gzip.decompress(zf.read(MEMBER)).decode("utf-8")
    kept = [w for w in (line.strip() for line in text.splitlines()) if min_length <= len(w) <= max_length]
    out.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return len(kept)


if __name__ == "__main__":
    print(f"wrote {build(Path(sys.argv[1]))} passwords to {OUT}")
