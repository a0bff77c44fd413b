"""A small reader of the report page for tests (stdlib ``html.parser``): its tables, images,
sections, every URL-bearing attribute, and the text of elements by id."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

URL_ATTRIBUTES = {"src", "href", "srcset", "action", "formaction", "poster", "data", "background", "xlink:href",
                  "manifest", "ping", "cite", "longdesc"}


@dataclass
class ParsedTable:
    stem: str
    section: str
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    styles: list[list[str]] = field(default_factory=list)  # the style attribute of each body cell


class Page(HTMLParser):
    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, ParsedTable] = {}
        self.images: list[dict] = []  # attrs + the section they are in
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.sections: list[str] = []
        self.texts: dict[str, str] = {}  # element id -> its text (for ids asked with ``watch``)
        self.tags: list[str] = []
        self._section = ""
        self._table: ParsedTable | None = None
        self._in_head = False
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._row_styles: list[str] = []
        self._open_ids: list[tuple[str, int]] = []
        self._depth = 0
        self._buffers: dict[str, list[str]] = {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        self._depth += 1
        for name, value in attrs:
            if name in URL_ATTRIBUTES and value is not None:
                self.urls.append((tag, name, value))
        if "id" in a and tag not in ("img", "br", "meta", "input"):
            self._open_ids.append((a["id"], self._depth))
            self._buffers[a["id"]] = []
        if tag == "section":
            self._section = a.get("id", "")
            self.sections.append(self._section)
        elif tag == "table" and ("data-stem" in a or "id" in a):  # a view's table by stem, others by "#id"
            key = a.get("data-stem") or f"#{a['id']}"
            self._table = self.tables[key] = ParsedTable(key, self._section)
        elif tag == "thead" and self._table is not None:
            self._in_head = True
        elif tag == "tr" and self._table is not None:
            self._row, self._row_styles = [], []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
            if not self._in_head:
                self._row_styles.append(a.get("style") or "")
        elif tag == "img":
            self.images.append({**a, "section": self._section})
        if tag in ("img", "br", "meta", "input", "link"):
            self._depth -= 1

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            if self._in_head:
                self._table.header = self._row
            else:
                self._table.rows.append(self._row)
                self._table.styles.append(self._row_styles)
            self._row = None
        elif tag == "thead":
            self._in_head = False
        elif tag == "table":
            self._table = None
        while self._open_ids and self._open_ids[-1][1] >= self._depth:
            element_id, _ = self._open_ids.pop()
            self.texts[element_id] = " ".join("".join(self._buffers.pop(element_id)).split())
        self._depth -= 1

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        for element_id, _ in self._open_ids:
            self._buffers[element_id].append(data)

    def table(self, key: str) -> ParsedTable:
        return self.tables[key]

    @property
    def views(self) -> dict[str, ParsedTable]:
        """The tables rendered from report views (keyed by stem)."""
        return {key: t for key, t in self.tables.items() if not key.startswith("#")}
