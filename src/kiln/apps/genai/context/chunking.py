"""Token-based, paragraph- and heading-aware chunking with the embedding model's own tokenizer.

Windows hold at most `chunk_length` tokens and start `chunk_overlap` tokens before the previous
window's end. Inside that limit a window ends at the last paragraph or heading boundary past its
middle, so chunks follow the document's structure. Chunk text is a slice of the original text
(not a detokenised string), and each window is re-encoded after cutting: a window cut at token
offsets can re-encode to more tokens than it was cut from, and is then shortened until it fits.
The tokenizer comes from the embeddings provider and is loaded once per process.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
BOUNDARY_RE = re.compile(r"\n[ \t]*\n+|\n(?=[ \t]*#{1,6}[ \t])|\n(?=[ \t]*(?:[-*+]|\d+[.)])[ \t])")
MAX_FIT_TRIES = 8


def clean_text(text: str) -> str:
    """Text safe for every database: NUL and C0 control characters (but tab and newline) removed,
    line endings unified."""
    return CONTROL_RE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class ChunkPiece:
    index: int
    text: str
    token_count: int
    page_number: int | None = None

    @property
    def hash(self) -> str:
        return text_hash(self.text)


def _boundaries(text: str) -> list[int]:
    return sorted({match.end() for match in BOUNDARY_RE.finditer(text)})


def _count(tokenizer: Any, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def chunk_text(
    text: str,
    tokenizer: Any,
    chunk_length: int,
    chunk_overlap: int,
    page_number: int | None = None,
    start_index: int = 0,
) -> list[ChunkPiece]:
    if chunk_length <= 0 or not 0 <= chunk_overlap < chunk_length:
        raise ValueError("chunk_overlap must be >= 0 and below chunk_length")
    encoding = tokenizer.encode(text, add_special_tokens=False)
    offsets = encoding.offsets
    n = len(offsets)
    if n == 0:
        return []
    # Token index at which each paragraph/heading boundary falls.
    starts = [start for start, _ in offsets]
    boundary_tokens: list[int] = []
    position = 0
    for char_pos in _boundaries(text):
        while position < n and starts[position] < char_pos:
            position += 1
        if 0 < position < n:
            boundary_tokens.append(position)
    pieces: list[ChunkPiece] = []
    begin = 0
    while begin < n:
        end = min(begin + chunk_length, n)
        if end < n:
            cut = [b for b in boundary_tokens if begin + chunk_length // 2 < b <= end]
            if cut:
                end = cut[-1]
        piece_text, tokens = "", 0
        for _ in range(MAX_FIT_TRIES):
            piece_text = text[offsets[begin][0] : offsets[end - 1][1]].strip()
            tokens = _count(tokenizer, piece_text)
            if tokens <= chunk_length or end - begin <= 1:
                break
            end = max(begin + 1, end - (tokens - chunk_length))
        if piece_text:
            pieces.append(ChunkPiece(start_index + len(pieces), piece_text, tokens, page_number))
        if end >= n:
            break
        begin = max(end - chunk_overlap, begin + 1)
    return pieces


def chunk_document(
    text: str, page_texts: list[dict[str, Any]] | None, tokenizer: Any, chunk_length: int, chunk_overlap: int
) -> list[ChunkPiece]:
    """Chunks of a whole document; PDF pages are chunked one by one and keep their page number."""
    if page_texts:
        pieces: list[ChunkPiece] = []
        for page in page_texts:
            pieces.extend(
                chunk_text(
                    page["text"],
                    tokenizer,
                    chunk_length,
                    chunk_overlap,
                    page_number=page.get("page_number"),
                    start_index=len(pieces),
                )
            )
        return pieces
    return chunk_text(text, tokenizer, chunk_length, chunk_overlap)
