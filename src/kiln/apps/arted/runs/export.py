"""Export of an execution record as JSON, XML (lxml), PDF (reportlab) or DOCX (python-docx).

Control characters are stripped from every string first: XML 1.0 cannot carry them, and a
writer that passes them through produces a file no parser accepts.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

FORMATS = {
    "json": "application/json",
    "xml": "application/xml",
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_TAG = re.compile(r"[^A-Za-z0-9_.-]")


def scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _CONTROL.sub("", value)
    if isinstance(value, dict):
        return {scrub(str(k)): scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def to_json(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, indent=2, sort_keys=True).encode()


def _xml_add(parent: Any, key: str, value: Any) -> None:
    from lxml import etree

    tag = _TAG.sub("_", key) or "value"
    if tag[0].isdigit() or tag[0] in ".-":
        tag = "_" + tag
    if isinstance(value, dict):
        node = etree.SubElement(parent, tag)
        for k, v in value.items():
            _xml_add(node, str(k), v)
    elif isinstance(value, list):
        node = etree.SubElement(parent, tag)
        for v in value:
            _xml_add(node, "item", v)
    else:
        node = etree.SubElement(parent, tag)
        if value is not None:
            node.text = str(value)


def to_xml(record: dict[str, Any]) -> bytes:
    from lxml import etree

    root = etree.Element("execution", id=str(record.get("execution_id", "")))
    for key, value in record.items():
        _xml_add(root, key, value)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _lines(record: dict[str, Any]) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    head = [
        (k, str(record.get(k)))
        for k in (
            "execution_id",
            "config_name",
            "timestamp",
            "user_id",
            "session_id",
            "safety_level",
            "execution_mode",
            "status",
            "used_seed",
            "total_execution_time",
            "input_text",
            "final_output",
        )
    ]
    return head, record.get("items", [])


def _item_text(item: dict[str, Any]) -> str:
    parts = [f"#{item.get('sequence_number')} stage {item.get('stage')} {item.get('item_type')}"]
    for key in ("model_used", "backend_used", "file_path"):
        if item.get(key):
            parts.append(f"{key}: {item[key]}")
    text = " · ".join(parts)
    if item.get("content"):
        text += "\n" + str(item["content"])
    if item.get("metadata"):
        text += "\n" + json.dumps(item["metadata"], ensure_ascii=False)
    return text


def to_pdf(record: dict[str, Any]) -> bytes:
    from xml.sax.saxutils import escape

    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

    styles = getSampleStyleSheet()
    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, title=f"Run {record.get('execution_id')}")
    story: list[Any] = [Paragraph(escape(f"Execution {record.get('execution_id')}"), styles["Title"])]
    head, items = _lines(record)
    for key, value in head:
        story.append(Paragraph(f"<b>{escape(key)}</b>: {escape(value)}", styles["Normal"]))
    story.append(Spacer(1, 12))
    for item in items:
        story.append(Paragraph(escape(_item_text(item)).replace("\n", "<br/>"), styles["Normal"]))
        story.append(Spacer(1, 6))
    doc.build(story)
    return buf.getvalue()


def to_docx(record: dict[str, Any]) -> bytes:
    from docx import Document

    document = Document()
    document.add_heading(f"Execution {record.get('execution_id')}", 0)
    head, items = _lines(record)
    table = document.add_table(rows=0, cols=2)
    for key, value in head:
        cells = table.add_row().cells
        cells[0].text, cells[1].text = key, value
    document.add_heading("Items", 1)
    for item in items:
        document.add_paragraph(_item_text(item))
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


WRITERS = {"json": to_json, "xml": to_xml, "pdf": to_pdf, "docx": to_docx}


def export(record: dict[str, Any], fmt: str) -> bytes:
    return WRITERS[fmt](scrub(record))
