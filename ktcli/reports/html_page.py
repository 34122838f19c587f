"""A self-contained HTML page: inline CSS, images as data URIs, one small inline script.

Everything that is not :class:`Markup` is escaped, so names read from a work dir (class
folders, paths) cannot inject markup or script into the page.
"""
import base64
import html
from typing import Iterable, Optional, Sequence, Union


class Markup(str):
    """HTML that is already safe (built here from escaped parts)."""


Cell = Union[str, int, float, None, Markup, 'SortedCell']


class SortedCell:
    """A table cell shown as ``content`` and sorted by ``key`` (a number, or None last)."""

    def __init__(self, content: Union[str, Markup], key: Optional[float]) -> None:
        self.content, self.key = content, key


def escape(value: object) -> Markup:
    """``value`` as HTML text (Markup passes through)."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape('' if value is None else str(value), quote=True))


def join(parts: Iterable[object], separator: str = '') -> Markup:
    """Escaped parts joined."""
    return Markup(escape(separator).join(escape(part) for part in parts))


def tag(name: str, content: object = '', **attributes: object) -> Markup:
    """``<name attributes>content</name>``; ``class_`` means ``class``; None drops one."""
    pairs = ''.join(f' {key.rstrip("_").replace("_", "-")}="{escape(value)}"'
                    for key, value in attributes.items() if value is not None)
    return Markup(f'<{name}{pairs}>{escape(content)}</{name}>')


def image(png: bytes, alt: str, mime: str = 'image/png', **attributes: object) -> Markup:
    """An ``<img>`` with the image inline as a base64 data URI."""
    source = f'data:{mime};base64,{base64.b64encode(png).decode("ascii")}'
    pairs = ''.join(f' {key.rstrip("_")}="{escape(value)}"' for key, value in
                    attributes.items() if value is not None)
    return Markup(f'<img src="{source}" alt="{escape(alt)}"{pairs}>')


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], sortable: bool = False,
          caption: Optional[str] = None, **attributes: object) -> Markup:
    """A table; ``sortable`` ones sort by a column when its header is clicked (numbers
    numerically: a cell's ``data-sort`` or its leading number)."""
    head = tag('tr', join(tag('th', header) for header in headers))
    body = []
    for row in rows:
        cells = []
        for cell in row:
            if isinstance(cell, SortedCell):
                cells.append(tag('td', cell.content, data_sort='' if cell.key is None
                                 else f'{cell.key:.10g}'))
            else:
                cells.append(tag('td', '—' if cell is None else
                                 (f'{cell:.2f}' if isinstance(cell, float) else cell)))
        body.append(tag('tr', join(cells)))
    classes = ' '.join(part for part in ('sortable' if sortable else '',
                                         attributes.pop('class_', '')) if part)
    return tag('table', join([tag('caption', caption) if caption else '',
                              tag('thead', head), tag('tbody', join(body))]),
               class_=classes or None, **attributes)


def section(anchor: str, title: str, *parts: object) -> Markup:
    """A ``<section id=anchor>`` with a heading."""
    return tag('section', join([tag('h2', title), *parts]), id=anchor)


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
margin:0;color:#1d232a;background:#f6f7f9}
header{background:#1f3a5f;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:22px}header p{margin:0;opacity:.85}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #dde1e6;padding:6px 28px;
z-index:2}nav a{margin-right:16px;color:#1f3a5f;text-decoration:none;font-weight:600}
main{padding:8px 28px 40px;max-width:1500px}
section{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:6px 20px 16px;
margin:16px 0}h2{font-size:18px;border-bottom:1px solid #eef0f3;padding-bottom:6px}
h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;margin:8px 0 12px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #dde1e6;padding:4px 8px;text-align:right;vertical-align:top}
th{background:#eef2f7}td:first-child,th:first-child{text-align:left}
caption{caption-side:bottom;text-align:left;color:#5a6472;font-size:12px;padding-top:4px}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:after{content:" \\2195";
color:#9aa5b1}dl.facts{display:grid;grid-template-columns:max-content auto;gap:3px 14px}
dl.facts dt{font-weight:600;color:#3d4752}dl.facts dd{margin:0;word-break:break-all}
.note{color:#5a6472;font-size:13px}.right{color:#16823c}.wrong{color:#c81e1e}
figure{margin:12px 0}figure img{max-width:100%;height:auto;border:1px solid #eef0f3}
figcaption{font-size:13px;color:#3d4752;margin-top:4px}
.gallery figure{border-top:1px solid #eef0f3;padding-top:10px}
.scroll{overflow-x:auto}
"""

# Sorts a table.sortable by the clicked column; a second click reverses the order.
SORT_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, column) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var up = th.getAttribute('data-order') !== 'up';
      th.setAttribute('data-order', up ? 'up' : 'down');
      function key(row) {
        var cell = row.cells[column], text = cell.getAttribute('data-sort');
        if (text === null) { text = cell.textContent.trim(); }
        var number = parseFloat(text.replace('\\u2212', '-'));
        return isNaN(number) ? (text === '' || text === '\\u2014' ? null : text) : number;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null) { return y === null ? 0 : 1; }
        if (y === null) { return -1; }
        var order = (typeof x === 'number' && typeof y === 'number') ? x - y
          : String(x).localeCompare(String(y));
        return up ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def page(title: str, subtitle: str, sections: Sequence[tuple]) -> str:
    """The whole document: a header, a bar of links to the sections, the sections.

    Args:
        title (str): The page title.
        subtitle (str): A line under it.
        sections (Sequence[tuple]): ``(anchor, short title, section markup)``.
    """
    links = join(tag('a', short, href=f'#{anchor}') for anchor, short, _ in sections)
    body = join([tag('header', join([tag('h1', title), tag('p', subtitle)])), tag('nav', links),
                 tag('main', join(markup for _, _, markup in sections))])
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{escape(title)}</title><style>{STYLE}</style></head>'
            f'<body>{body}<script>{SORT_SCRIPT}</script></body></html>\n')
