"""Text for STAC fields that readers render as CommonMark (``description``; STAC Browser shows
it as Markdown, so ``…/<archive>.tar`` would be taken for an HTML tag and vanish, ``*`` or ``_``
around words would turn into emphasis). A leaf module: any layer may use it."""
from __future__ import annotations

import re

#: what can change how CommonMark (with GitHub's strikethrough) renders inline text: backslash,
#: code, emphasis, HTML and entities, links, strikethrough, and an underscore at a word's edge
#: (one inside a word, as in LC08_193026_20220515, never is emphasis and stays as it is)
_SPECIAL = re.compile(r"([\\`*<>\[\]&~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def markdown_escape(text: str) -> str:
    """`text` as CommonMark that renders as exactly `text`."""
    return _SPECIAL.sub(r"\\\1", text)
