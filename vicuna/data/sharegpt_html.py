"""ShareGPT's HTML dumps -> markdown (`format: sharegpt_html`), as FastChat's clean_sharegpt.py
reads them: the page's HTML turned into markdown (markdownify), and the page's own chrome
left out: the "Copy code" button and language label of code blocks (the language goes on the
fence instead), the "2 / 2" regenerate counter before a message, "Copy12 chars / 3 words".

Only a turn that holds HTML is converted: a plain-text turn (most human ones) keeps its line
breaks and its `<`, which an HTML parser would read as markup.
"""

from __future__ import annotations

import re

import bs4
import markdownify

# A turn is HTML when it holds one of the tags the ShareGPT pages write.
_HTML = re.compile(r"<(?:div|p|pre|code|ol|ul|li|span|h[1-6]|table|br|strong|em|b|i|a|blockquote)\b[^>]*>",
                   re.I)
# The page's regenerate counter ("2 / 2"), glued before the first word of a message.
_COUNTER = re.compile(r"^\s*\d+ / \d+")
_COPY_CHARS = re.compile(r"Copy\d+ chars / \d+ words")
# Code blocks whose header was text rather than markup: "```\npythonCopy code" + the code.
_FENCE_HEADER = re.compile(r"```[ \t]*\n?([\w+#.-]*?)(?:Copy code)+\n*")
_EMPTY_CODE = re.compile(r"```[\w+#.-]*\s*(?:Copy code)+\s*```")
_BLANK_LINES = re.compile(r"\n{3,}")


def _language(pre: bs4.Tag) -> str:
    """`language-python` on the block's <code> (highlight.js's class), else nothing."""
    code = pre.find("code")
    for name in (code.get("class", []) if code is not None else []):
        if name.startswith("language-"):
            return name.removeprefix("language-")
    return ""


def _strip_chrome(soup: bs4.BeautifulSoup) -> None:
    """Buttons and icons are the page's, not the message's; a code block keeps only its code
    (its header, the language label and "Copy code", sits in <div>s around the <code>)."""
    for tag in soup.find_all(["button", "svg"]):
        tag.decompose()
    for pre in soup.find_all("pre"):
        code = pre.find("code")
        if code is None:
            continue
        kept = soup.new_tag("code", attrs={"class": code.get("class", [])})
        kept.string = code.get_text()  # highlight.js's <span>s dropped, the text exact
        pre.clear()
        pre.append(kept)


def to_markdown(value: str) -> str:
    """One turn of an HTML dump as markdown; text without HTML only loses the page's counters.
    Raises ValueError where the HTML cannot be parsed."""
    if _HTML.search(value):
        try:
            soup = bs4.BeautifulSoup(value, "html.parser")
        except bs4.ParserRejectedMarkup as e:
            raise ValueError(f"HTML that cannot be parsed ({e})") from None
        _strip_chrome(soup)
        # Escaping would teach the model to write my\_var: the text is kept as it was typed.
        value = markdownify.MarkdownConverter(
            heading_style=markdownify.ATX, bullets="-", code_language_callback=_language,
            escape_underscores=False, escape_asterisks=False, escape_misc=False,
        ).convert_soup(soup)
    value = _COUNTER.sub("", value, count=1)
    value = _COPY_CHARS.sub("", value)
    value = _EMPTY_CODE.sub("", value)
    value = _FENCE_HEADER.sub(lambda m: f"```{m.group(1)}\n", value)
    return _BLANK_LINES.sub("\n\n", value).strip()
