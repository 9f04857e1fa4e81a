"""The picture of the flows: this instance in the middle, its peers around it, as inline SVG.

Built server-side from health.peer_health() (no script, no external service); every
text is escaped.  An edge shows the direction data flows (pull: towards us, push:
towards the peer, both), the age of the last success and the counts waiting;
failing edges are red and dashed, overdue ones orange and dashed, each with a label
beside the line (never on it).  With many peers the most urgent are drawn one by one and
the rest one node per state, so that a hub's picture stays readable.
"""
import math
from xml.sax.saxutils import escape, quoteattr

from .health import URGENCY, age, by_urgency

WIDTH, HEIGHT = 760, 440
NODE_W, NODE_H = 170, 44
WIDE = (960, 640, 150, 40)  # the canvas and node box for more than two peers: their labels need the room
FULL = 6  # up to this many peers every edge carries its whole label; beyond, the state alone (the rest on hover)
MAX_NODES = 12  # beyond this many peers the least urgent are drawn as one node per state: "84 peers, ok"
COLOURS = {"failing": "#b91c1c", "overdue": "#d97706", "ok": "#15803d", "never": "#6b7280", "file": "#6b7280"}
HALO = ' paint-order="stroke" stroke="#fff" stroke-width="3" stroke-linejoin="round"'


class _Box(object):
    """The canvas and node size of one picture: larger with many peers, so that no two nodes touch."""

    def __init__(self, count):
        self.width, self.height, self.node_w, self.node_h = (
            WIDE if count > 2 else (WIDTH, HEIGHT * 2 // 3, NODE_W, NODE_H))


def _node(box, x, y, title, sub, cls, colour="#0f766e", data=""):
    w, h = box.node_w, box.node_h
    return ('<g class="%s"%s><rect x="%d" y="%d" width="%d" height="%d" rx="8" fill="#fff" stroke="%s" '
            'stroke-width="2"/><text x="%d" y="%d" text-anchor="middle" font-size="13" font-weight="600">%s</text>'
            '<text x="%d" y="%d" text-anchor="middle" font-size="10" fill="#6b7280">%s</text></g>'
            % (cls, data, x - w // 2, y - h // 2, w, h, colour, x, y - 3, escape(title[:w // 7]),
               x, y + 13, escape(sub[:w // 6])))


def _label(x0, y0, x1, y1, lines, at=0.5):
    """Text lines beside the line from (x0, y0) to (x1, y1), never on it: offset along the line's normal,
    anchored away from it; each line [(text, size, colour, bold, css class)]."""
    dx, dy = x1 - x0, y1 - y0
    length = math.hypot(dx, dy) or 1.0
    nx, ny = -dy / length, dx / length
    if nx < 0 or (nx == 0 and ny > 0):
        nx, ny = -nx, -ny  # the side to the right (or above): one rule, whichever way the line runs
    px, py = x0 + dx * at, y0 + dy * at
    step = 13
    if abs(nx) >= 0.35:  # a steep line: the text to its right, centred on the point
        anchor, x, top = "start", px + nx * 8, py + ny * 8 - step * (len(lines) - 1) / 2.0 + 4
    else:  # a flat line: the text above it
        anchor, x, top = "middle", px, py - 8 - step * (len(lines) - 1)
    out = []
    for i, (text, size, colour, bold, cls) in enumerate(lines):
        out.append('<text x="%d" y="%d" text-anchor="%s" font-size="%d"%s%s%s%s>%s</text>' % (
            x, top + i * step, anchor, size, ' font-weight="700"' if bold else "",
            ' fill="%s"' % colour if colour else "", ' class="%s"' % cls if cls else "", HALO, escape(str(text))))
    return "".join(out)


def _line(x0, y0, x1, y1, state, mode):
    colour = COLOURS.get(state, "#6b7280")
    dashed = state in ("failing", "overdue")
    ends = ' marker-end="url(#ps-arrow-%s)"' % state if mode in ("push", "both") else ""
    ends += ' marker-start="url(#ps-arrow-%s)"' % state if mode in ("pull", "both") else ""
    return ('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="%s"%s%s/>'
            % (x0, y0, x1, y1, colour, 3 if dashed else 2, ' stroke-dasharray="8 5"' if dashed else "", ends))


def _state_label(h, T):
    if h.state == "failing":
        return [T("FAILING")]
    if h.state == "overdue":
        return [T("OVERDUE by %s") % age(h.overdue)]
    return []


def _details(h, T):
    """(what flows, the counts) of one peer's edge: its mode, the last success, what waits, the last run."""
    parts = [T(h.peer.mode or "both")]
    if h.success:
        parts.append(T("last ok %s ago") % age(h.now - h.success.started_on))
    counts = []
    if h.to_go:
        counts.append(T("%s to go") % h.to_go)
    if h.to_come:
        counts.append(T("%s to come") % h.to_come)
    if h.attempt and not h.failing:
        counts.append(T("%s in, %s out") % (h.attempt.docs_read or 0, h.attempt.docs_written or 0))
    return " | ".join(str(s) for s in parts), ", ".join(str(c) for c in counts)


def _edge(ends, h, T, full):
    """One peer's edge: a line with arrow heads for its mode, coloured and labelled by its state (the whole
    label when the picture has room for it, else the state alone and the rest as the edge's tooltip)."""
    colour = COLOURS.get(h.state, "#6b7280")
    flows, counts = _details(h, T)
    lines = [(flows, 11, None, False, None)] if full else []
    if full and counts:
        lines.append((counts, 10, "#374151", False, None))
    lines += [(text, 11, colour, True, "ps-edge-label") for text in _state_label(h, T)]
    return ('<g class="ps-edge ps-edge-%s" data-peer=%s><title>%s</title>%s%s</g>'
            % (h.state, quoteattr(h.peer.base_uuid), escape("%s: %s %s" % (h.peer.owner or h.peer.base_uuid,
                                                                           flows, counts)),
               _line(*ends, state=h.state, mode=h.peer.mode or "both"), _label(*ends, lines=lines, at=0.5 if full
                                                                                  else 0.6)))


def _group_edge(ends, state, members, T):
    """The edge of the peers drawn as one node: their state's colour, how many, what waits for them."""
    colour = COLOURS.get(state, "#6b7280")
    to_go = sum(h.to_go or 0 for h in members)
    lines = [(T("%s peers") % len(members), 11, colour, state in ("failing", "overdue"), "ps-edge-label")]
    if to_go:
        lines.append((T("%s to go") % to_go, 10, "#374151", False, None))
    return ('<g class="ps-edge ps-edge-%s ps-group-edge" data-state="%s" data-count="%d"><title>%s</title>%s%s</g>'
            % (state, state, len(members), escape(", ".join(h.peer.owner or h.peer.base_uuid for h in members)),
               _line(*ends, state=state, mode="both"), _label(*ends, lines=lines, at=0.6)))


STATE_NAMES = {"failing": "failing", "overdue": "overdue", "never": "never synced", "ok": "ok", "file": "file only"}


def _nodes(health):
    """What is drawn around us: [(peer health or None, state, members)], most urgent first: every peer while
    they fit, else the most urgent one by one and the rest one node per state."""
    if len(health) <= MAX_NODES:
        return [(h, h.state, [h]) for h in health]
    single = MAX_NODES
    while single and single + len({h.state for h in health[single:]}) > MAX_NODES:
        single -= 1
    out = [(h, h.state, [h]) for h in health[:single]]
    for state in URGENCY:
        members = [h for h in health[single:] if h.state == state]
        if members:
            out.append((None, state, members))
    return out


def _markers():
    out = []
    for state, colour in COLOURS.items():
        out.append('<marker id="ps-arrow-%s" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
                   'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="%s"/></marker>' % (state, colour))
    return "<defs>%s</defs>" % "".join(out)


def svg(me, health, now, T=lambda s: s):
    """The SVG text of the picture: `me` (this instance's identity row), `health` (peer_health(), in any order:
    drawn most urgent first), `now` (UTC).  With many peers the least urgent are grouped by state, and the
    most urgent edges are painted last, on top."""
    health = by_urgency(health)
    drawn = _nodes(health)
    box = _Box(len(drawn))
    cx, cy = box.width // 2, box.height // 2
    n = max(1, len(drawn))
    rx, ry = box.width // 2 - box.node_w // 2 - 10, box.height // 2 - box.node_h // 2 - 10
    edges, nodes = [], []
    for i, (h, state, members) in enumerate(drawn):
        angle = -math.pi / 2 + 2 * math.pi * i / n
        x, y = cx + int(rx * math.cos(angle)), cy + int(ry * math.sin(angle))
        # the line stops at the node boxes' edges, so the arrow heads show
        ends = _towards(box, cx, cy, x, y) + _towards(box, x, y, cx, cy)
        colour = COLOURS.get(state, "#6b7280")
        if h is not None:
            h.now = now
            edges.append(_edge(ends, h, T, full=len(drawn) <= FULL))
            nodes.append(_node(box, x, y, h.peer.owner or h.peer.base_uuid[:8], h.peer.url or T("file only"),
                               "ps-node ps-node-%s" % state, colour))
        else:
            edges.append(_group_edge(ends, state, members, T))
            nodes.append(_node(box, x, y, str(T("%s peers") % len(members)), str(T(STATE_NAMES[state])),
                               "ps-node ps-group ps-node-%s" % state, colour, ' data-count="%d"' % len(members)))
    nodes.append(_node(box, cx, cy, me.owner or T("This instance"), me.base_uuid[:18], "ps-node ps-me"))
    if not health:
        nodes.append('<text x="%d" y="%d" text-anchor="middle" font-size="12" fill="#6b7280">%s</text>'
                     % (cx, cy + 50, escape(str(T("No peers yet.")))))
    return ('<svg xmlns="http://www.w3.org/2000/svg" class="ps-graph" viewBox="0 0 %d %d" role="img" aria-label=%s>'
            '%s%s%s</svg>' % (box.width, box.height, quoteattr(str(T("This instance and its peers"))), _markers(),
                              "".join(reversed(edges)), "".join(nodes)))


def _towards(box, x0, y0, x1, y1):
    """The point where the line from (x0, y0) to (x1, y1) leaves the node box centred at (x0, y0)."""
    dx, dy = x1 - x0, y1 - y0
    if not dx and not dy:
        return x0, y0
    scale = min((box.node_w / 2 + 4) / abs(dx) if dx else float("inf"),
                (box.node_h / 2 + 4) / abs(dy) if dy else float("inf"))
    return int(x0 + dx * scale), int(y0 + dy * scale)
