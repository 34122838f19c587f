"""matplotlib, headless, and its figures as PNG bytes (for pages that embed them)."""
import io


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def figure_png(figure) -> bytes:
    """The figure as PNG bytes (tight layout); the figure is closed."""
    plt = pyplot()
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format='png')
    plt.close(figure)
    return buffer.getvalue()
