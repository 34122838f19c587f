"""matplotlib, headless, and its figures as PNG bytes (for pages that embed them), and
text as both matplotlib and PIL draw it literally."""
import io
import unicodedata


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed), drawing every text as
    it is: a class name or label from a received file with ``$`` is not mathtext (whose
    parser fails on a broken formula)."""
    import matplotlib
    matplotlib.use('Agg')
    matplotlib.rcParams['text.parse_math'] = False
    import matplotlib.pyplot as plt
    return plt


def plain_text(text: object, limit: int = 200) -> str:
    """``text`` as one line of drawable characters, at most ``limit`` long: control and
    other unprintable characters (a newline, which PIL's layout engine fails on; a NUL,
    which no font has) become '?'."""
    return ''.join('?' if unicodedata.category(char).startswith('C') else char
                   for char in str(text)[:limit])


def figure_png(figure) -> bytes:
    """The figure as PNG bytes (tight layout); the figure is closed."""
    plt = pyplot()
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format='png')
    plt.close(figure)
    return buffer.getvalue()
