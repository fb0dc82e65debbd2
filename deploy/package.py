"""`make package`: one reproducible zip per function in dist/, ready for `content { zip_filename }`.

Each archive holds the function's handler.py at the root (the entry point is `handler.handler`), the
`shared/` package and requirements.txt (the service installs the dependencies when it builds the
version). Entries are sorted, timestamps fixed and permissions normalised, so the same sources give
the same bytes and `user_hash = filesha256(zip)` changes only when code does.
"""

from __future__ import annotations

import hashlib
import io
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
DIRECT_UPLOAD_LIMIT = int(3.5 * 1024 * 1024)  # larger archives must go through a bucket (package {})


def files_for(function: str) -> list[tuple[str, Path]]:
    entries = [("handler.py", ROOT / "functions" / function / "handler.py")]
    if function != "authorizer":  # the authorizer needs nothing but the standard library
        entries += [("requirements.txt", ROOT / "requirements.txt")]
        entries += [(f"shared/{p.relative_to(ROOT / 'shared').as_posix()}", p)
                    for p in sorted((ROOT / "shared").rglob("*.py"))]
    return sorted(entries)


def build(function: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, path in files_for(function):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def functions() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "functions").glob("*/handler.py"))


def main() -> int:
    DIST.mkdir(exist_ok=True)
    print(f"{'function':<16} {'bytes':>9}  sha256")
    for function in functions():
        data = build(function)
        (DIST / f"{function}.zip").write_bytes(data)
        print(f"{function:<16} {len(data):>9}  {hashlib.sha256(data).hexdigest()}")
        if len(data) > DIRECT_UPLOAD_LIMIT:
            print(f"  {function}.zip is over the 3.5 MB direct-upload limit: deploy it with package {{}}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
