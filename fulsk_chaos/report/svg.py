"""What the HTML pages share: their style, and matplotlib figures as inline SVG (text kept as
text, so pages stay small and searchable)."""
from __future__ import annotations

import io
from typing import Any

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1180px;color:#1d2330;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin:0}h3{font-size:1em;margin:1.2em 0 .4em}
table{border-collapse:collapse;width:100%;margin:.5em 0}th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #e3e6ec;vertical-align:top}
th{background:#f3f5f8;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.verdict{display:inline-block;padding:.05em .55em;border-radius:.3em;font-weight:700;font-size:.85em;color:#fff;text-transform:uppercase}
.v-pass{background:#1f883d}.v-fail{background:#cf222e}.v-error{background:#9a6700}.v-invalid{background:#8250df}.v-skipped,.v-interrupted,.v-running{background:#6e7781}
.held-true{color:#1f883d}.held-false{color:#cf222e;font-weight:600}.held-none{color:#9a6700;font-weight:600}
section.scenario{border:1px solid #d0d7de;border-radius:.5em;padding:1em 1.2em;margin:1.5em 0}
.hypothesis{color:#444;font-style:italic}.reason{margin:.3em 0}.meta{color:#57606a}
figure.chart,figure.trend{margin:.8em 0}figure.chart svg{width:100%;height:auto}figure.trend svg{max-width:100%;height:auto}
details{margin:.4em 0}code{font-size:.9em}
"""


def pyplot(font_size: float = 9) -> Any:
    """matplotlib's pyplot, drawing off-screen."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"svg.fonttype": "none", "font.size": font_size})
    return plt


def inline(fig: Any) -> str:
    """The figure as an <svg> element (closed after)."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    fig.clf()
    import matplotlib.pyplot as plt
    plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]
