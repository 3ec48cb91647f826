"""A published page's hand-written block: what a person wrote between two markers survives the tool
that makes the page again (bench learn's results pages, sweep-report's report)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["NOTES_START", "NOTES_END", "kept_notes"]

NOTES_START = "<!-- notes: written by hand, kept when the page is made again -->"
NOTES_END = "<!-- /notes -->"


def kept_notes(md: Path) -> str:
    """The hand-written block (NOTES_START … NOTES_END, markers included) of an existing page, or ''."""
    text = md.read_text() if md.exists() else ""
    start, end = text.find(NOTES_START), text.find(NOTES_END)
    return text[start:end + len(NOTES_END)] if 0 <= start < end else ""
