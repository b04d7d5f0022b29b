"""Upload parsing: .txt/.md (one document), .json (an object or an array of objects), .jsonl (one
object a line), text PDFs via pypdf (pages kept; encrypted or text-less PDFs refused)."""

from __future__ import annotations

import io
import json
from pathlib import PurePath
from typing import Any

from kiln.apps.genai.context.chunking import clean_text

SUPPORTED = (".txt", ".md", ".json", ".jsonl", ".pdf")
MAX_PDF_PAGES = 2000


class ParseError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ParseError("unsupported_file_encoding", f"{name} is not UTF-8 text") from None


def _from_object(obj: Any, name: str, position: int) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ParseError("invalid_json_document", f"{name} item {position} is not an object")
    title = obj.get("title") or obj.get("name") or f"{PurePath(name).stem} #{position + 1}"
    text = obj.get("text") if obj.get("text") is not None else obj.get("content")
    if not isinstance(text, str) or not text.strip():
        raise ParseError("invalid_json_document", f"{name} item {position} has no text/content string")
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ParseError("invalid_json_document", f"{name} item {position} metadata is not an object")
    doc = {"title": str(title)[:500], "text": clean_text(text), "metadata": metadata}
    for key in ("uri", "source_type", "source_name"):
        if isinstance(obj.get(key), str):
            doc[key] = obj[key][:2048]
    return doc


def parse_pdf(data: bytes, name: str) -> dict[str, Any]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise ParseError("pdf_encrypted", f"{name} is encrypted")
        if len(reader.pages) > MAX_PDF_PAGES:
            raise ParseError("pdf_too_many_pages", f"{name} has more than {MAX_PDF_PAGES} pages")
        pages = []
        for number, page in enumerate(reader.pages, start=1):
            text = clean_text(page.extract_text() or "").strip()
            if text:
                pages.append({"page_number": number, "text": text})
    except ParseError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ParseError("pdf_unreadable", f"{name} is not a readable PDF ({type(exc).__name__})") from None
    if not pages:
        raise ParseError("pdf_no_text", f"{name} has no extractable text (scanned PDFs need OCR)")
    return {
        "title": PurePath(name).stem[:500],
        "text": "\n\n".join(p["text"] for p in pages),
        "page_texts": pages,
        "metadata": {},
        "page_count": len(reader.pages),
    }


def parse_file(name: str, data: bytes) -> list[dict[str, Any]]:
    suffix = PurePath(name).suffix.lower()
    if suffix not in SUPPORTED:
        raise ParseError("unsupported_file_type", f"{name}: supported types are {', '.join(SUPPORTED)}")
    if suffix == ".pdf":
        return [parse_pdf(data, name)]
    text = _decode(data, name)
    if suffix in (".txt", ".md"):
        if not text.strip():
            raise ParseError("empty_file", f"{name} is empty")
        return [{"title": PurePath(name).stem[:500], "text": clean_text(text), "metadata": {}}]
    if suffix == ".json":
        try:
            value = json.loads(text)
        except ValueError:
            raise ParseError("invalid_json", f"{name} is not valid JSON") from None
        items = value if isinstance(value, list) else [value]
        return [_from_object(item, name, i) for i, item in enumerate(items)]
    docs = []
    for i, line in enumerate(text.splitlines()):
        if line.strip():
            try:
                docs.append(_from_object(json.loads(line), name, i))
            except ValueError:
                raise ParseError("invalid_json", f"{name} line {i + 1} is not valid JSON") from None
    return docs
