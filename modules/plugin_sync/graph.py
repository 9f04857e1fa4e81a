"""The picture of the flows: this instance in the middle, its peers around it, as inline SVG.

Built server-side from health.peer_health() (no script, no external service); every
text is escaped.  An edge shows the direction data flows (pull: towards us, push:
towards the peer, both), the age of the last success and the counts waiting;
failing edges are red and dashed, overdue ones orange and dashed, each with a label.
"""
import math
from xml.sax.saxutils import escape, quoteattr

from .health import age

WIDTH, HEIGHT = 760, 440
NODE_W, NODE_H = 170, 44
COLOURS = {"failing": "#b91c1c", "overdue": "#d97706", "ok": "#15803d", "never": "#6b7280", "file": "#6b7280"}


def _node(x, y, title, sub, cls, colour="#0f766e"):
    return ('<g class="%s"><rect x="%d" y="%d" width="%d" height="%d" rx="8" fill="#fff" stroke="%s" stroke-width="2"/>'
            '<text x="%d" y="%d" text-anchor="middle" font-size="13" font-weight="600">%s</text>'
            '<text x="%d" y="%d" text-anchor="middle" font-size="10" fill="#6b7280">%s</text></g>'
            % (cls, x - NODE_W // 2, y - NODE_H // 2, NODE_W, NODE_H, colour, x, y - 3, escape(title[:26]),
               x, y + 13, escape(sub[:30])))


def _edge(cx, cy, x, y, h, T):
    """One peer's edge: a line with arrow heads for its mode, coloured and labelled by its state."""
    p = h.peer
    colour = COLOURS.get(h.state, "#6b7280")
    dashed = h.state in ("failing", "overdue")
    mode = p.mode or "both"
    ends = ' marker-end="url(#ps-arrow-%s)"' % h.state if mode in ("push", "both") else ""
    ends += ' marker-start="url(#ps-arrow-%s)"' % h.state if mode in ("pull", "both") else ""
    line = ('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="%s"%s%s/>'
            % (cx, cy, x, y, colour, 3 if dashed else 2, ' stroke-dasharray="8 5"' if dashed else "", ends))
    mx, my = (cx + x) // 2, (cy + y) // 2
    parts = [T(mode)]
    if h.success:
        parts.append(T("last ok %s ago") % age(h.now - h.success.started_on))
    counts = []
    if h.to_go:
        counts.append(T("%s to go") % h.to_go)
    if h.to_come:
        counts.append(T("%s to come") % h.to_come)
    if h.attempt and not h.failing:
        counts.append(T("%s in, %s out") % (h.attempt.docs_read or 0, h.attempt.docs_written or 0))
    label = ""
    if h.state == "failing":
        label = T("FAILING")
    elif h.state == "overdue":
        label = T("OVERDUE by %s") % age(h.overdue)
    texts = ['<text x="%d" y="%d" text-anchor="middle" font-size="11">%s</text>' % (mx, my - 6, escape(" | ".join(
        str(s) for s in parts)))]
    if counts:
        texts.append('<text x="%d" y="%d" text-anchor="middle" font-size="10" fill="#374151">%s</text>'
                     % (mx, my + 7, escape(", ".join(str(c) for c in counts))))
    if label:
        texts.append('<text x="%d" y="%d" text-anchor="middle" font-size="11" font-weight="700" fill="%s" '
                     'class="ps-edge-label">%s</text>' % (mx, my + 20, colour, escape(str(label))))
    return ('<g class="ps-edge ps-edge-%s" data-peer=%s>%s%s</g>'
            % (h.state, quoteattr(p.base_uuid), line, "".join(texts)))


def _markers():
    out = []
    for state, colour in COLOURS.items():
        out.append('<marker id="ps-arrow-%s" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
                   'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="%s"/></marker>' % (state, colour))
    return "<defs>%s</defs>" % "".join(out)


def svg(me, health, now, T=lambda s: s):
    """The SVG text of the picture: `me` (this instance's identity row), `health` (peer_health()), `now` (UTC)."""
    height = HEIGHT if len(health) > 2 else HEIGHT * 2 // 3  # one or two peers sit above (and below): less room
    cx, cy = WIDTH // 2, height // 2
    n = max(1, len(health))
    rx, ry = WIDTH // 2 - NODE_W // 2 - 10, height // 2 - NODE_H // 2 - 10
    edges, nodes = [], []
    for i, h in enumerate(health):
        angle = -math.pi / 2 + 2 * math.pi * i / n
        x, y = cx + int(rx * math.cos(angle)), cy + int(ry * math.sin(angle))
        h.now = now
        # the line stops at the node boxes' edges, so the arrow heads show
        sx, sy = _towards(cx, cy, x, y), _towards(x, y, cx, cy)
        edges.append(_edge(sx[0], sx[1], sy[0], sy[1], h, T))
        nodes.append(_node(x, y, h.peer.owner or h.peer.base_uuid[:8], h.peer.url or T("file only"),
                           "ps-node ps-node-%s" % h.state, COLOURS.get(h.state, "#6b7280")))
    nodes.append(_node(cx, cy, me.owner or T("This instance"), me.base_uuid[:18], "ps-node ps-me"))
    if not health:
        nodes.append('<text x="%d" y="%d" text-anchor="middle" font-size="12" fill="#6b7280">%s</text>'
                     % (cx, cy + 50, escape(str(T("No peers yet.")))))
    return ('<svg xmlns="http://www.w3.org/2000/svg" class="ps-graph" viewBox="0 0 %d %d" role="img" aria-label=%s>'
            '%s%s%s</svg>' % (WIDTH, height, quoteattr(str(T("This instance and its peers"))), _markers(),
                              "".join(edges), "".join(nodes)))


def _towards(x0, y0, x1, y1):
    """The point where the line from (x0, y0) to (x1, y1) leaves the node box centred at (x0, y0)."""
    dx, dy = x1 - x0, y1 - y0
    if not dx and not dy:
        return x0, y0
    scale = min((NODE_W / 2 + 4) / abs(dx) if dx else float("inf"), (NODE_H / 2 + 4) / abs(dy) if dy else float("inf"))
    return int(x0 + dx * scale), int(y0 + dy * scale)
