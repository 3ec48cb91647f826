"""A published page's hand-written block: what a person wrote between two markers survives the tool
that makes the page again (bench learn's results pages, sweep-report's report)."""

from __future__ import annotations

import warnings
from pathlib import Path

__all__ = ["NOTES_START", "NOTES_END", "EMPTY_NOTES", "kept_notes"]

NOTES_START = "<!-- notes: written by hand, kept when the page is made again -->"
NOTES_END = "<!-- /notes -->"
EMPTY_NOTES = f"{NOTES_START}\n{NOTES_END}"  # what a new page holds: the place to write, invisible until used


def kept_notes(md: Path) -> str:
    """The hand-written block (NOTES_START … NOTES_END, markers included) of an existing page, else EMPTY_NOTES."""
    text = md.read_text() if md.exists() else ""
    start, end = text.find(NOTES_START), text.find(NOTES_END)
    if 0 <= start < end:
        return text[start:end + len(NOTES_END)]
    if "<!-- notes" in text:  # a marker typed by hand: what follows it would be lost without a word
        warnings.warn(f"{md} has a notes marker other than the page's own `{NOTES_START}` … `{NOTES_END}`; "
                      "text outside those two lines is not kept when the page is made again")
    return EMPTY_NOTES
