"""Text as readers show it: STAC fields that readers render as CommonMark (``description``; STAC
Browser shows it as Markdown, so ``…/<archive>.tar`` would be taken for an HTML tag and vanish,
``*`` or ``_`` around words would turn into emphasis), and names whose bytes are not UTF-8 as
printable text. A leaf module: any layer may use it."""
from __future__ import annotations

import re

#: what can change how CommonMark (with GitHub's strikethrough) renders inline text: backslash,
#: code, emphasis, HTML and entities, links, strikethrough, and an underscore at a word's edge
#: (one inside a word, as in LC08_193026_20220515, never is emphasis and stays as it is)
_SPECIAL = re.compile(r"([\\`*<>\[\]&~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def markdown_escape(text: str) -> str:
    """`text` as CommonMark that renders as exactly `text`."""
    return _SPECIAL.sub(r"\\\1", text)


def shown_bytes(text: str) -> str:
    """``text`` with the bytes that are not UTF-8 (a Latin-1 folder name, which Python keeps as
    lone surrogates, PEP 383) as ``\\xe9``: printable, and saying what they are."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
