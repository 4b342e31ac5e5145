#!/usr/bin/env python3
"""Convert `tmux capture-pane -e -p` output (text with SGR colour escapes) to an SVG image.

Usage: ansi2svg.py COLS ROWS < capture.txt > screen.svg
Handles the SGR codes ratatui/crossterm emit: bold, dim, italic, underline, reverse, the 16
colours, 256-colour (38;5;n) and truecolor (38;2;r;g;b).
"""
import re
import sys
from html import escape

FG, BG = "#c8ccd4", "#1d2128"
BASE16 = ["#000000", "#cd0000", "#00cd00", "#cdcd00", "#0000ee", "#cd00cd", "#00cdcd", "#e5e5e5",
          "#7f7f7f", "#ff0000", "#00ff00", "#ffff00", "#5c5cff", "#ff00ff", "#00ffff", "#ffffff"]


def xterm256(n):
    if n < 16:
        return BASE16[n]
    if n < 232:
        n -= 16
        lv = [0, 95, 135, 175, 215, 255]
        return "#%02x%02x%02x" % (lv[n // 36], lv[(n // 6) % 6], lv[n % 6])
    v = 8 + 10 * (n - 232)
    return "#%02x%02x%02x" % (v, v, v)


def parse(line):
    """Yield (char, style) for each cell of one line."""
    st = {"fg": None, "bg": None, "b": False, "d": False, "i": False, "u": False, "r": False}
    pos = 0
    for m in re.finditer(r"\x1b\[([0-9;]*)m|([^\x1b])", line):
        if m.group(2) is not None:
            yield m.group(2), dict(st)
            continue
        codes = [int(c) if c else 0 for c in m.group(1).split(";")]
        k = 0
        while k < len(codes):
            c = codes[k]
            if c == 0:
                st.update(fg=None, bg=None, b=False, d=False, i=False, u=False, r=False)
            elif c == 1: st["b"] = True
            elif c == 2: st["d"] = True
            elif c == 3: st["i"] = True
            elif c == 4: st["u"] = True
            elif c == 7: st["r"] = True
            elif c == 22: st["b"] = st["d"] = False
            elif c == 23: st["i"] = False
            elif c == 24: st["u"] = False
            elif c == 27: st["r"] = False
            elif 30 <= c <= 37: st["fg"] = BASE16[c - 30]
            elif 90 <= c <= 97: st["fg"] = BASE16[c - 90 + 8]
            elif 40 <= c <= 47: st["bg"] = BASE16[c - 40]
            elif 100 <= c <= 107: st["bg"] = BASE16[c - 100 + 8]
            elif c == 39: st["fg"] = None
            elif c == 49: st["bg"] = None
            elif c in (38, 48) and k + 1 < len(codes):
                key = "fg" if c == 38 else "bg"
                if codes[k + 1] == 5 and k + 2 < len(codes):
                    st[key] = xterm256(codes[k + 2]); k += 2
                elif codes[k + 1] == 2 and k + 4 < len(codes):
                    st[key] = "#%02x%02x%02x" % tuple(codes[k + 2:k + 5]); k += 4
            k += 1


def main():
    cols, rows = int(sys.argv[1]), int(sys.argv[2])
    cw, ch = 8.4, 17
    lines = sys.stdin.read().split("\n")[:rows]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{cols * cw:.0f}" height="{rows * ch}" '
           f'font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="14">',
           f'<rect width="100%" height="100%" fill="{BG}"/>']
    for y, line in enumerate(lines):
        cells = list(parse(line))
        # Merge runs of equal style into one element (textLength keeps the grid exact).
        x = 0
        while x < len(cells):
            st = cells[x][1]
            end = x
            while end < len(cells) and cells[end][1] == st:
                end += 1
            text = "".join(c for c, _ in cells[x:end])
            fg, bg = st["fg"] or FG, st["bg"]
            if st["r"]:
                fg, bg = (st["bg"] or BG), (st["fg"] or FG)
            n = end - x
            if bg:
                out.append(f'<rect x="{x * cw:.1f}" y="{y * ch}" width="{n * cw + 0.5:.1f}" height="{ch}" fill="{bg}"/>')
            if text.strip():
                attrs = f'fill="{fg}"'
                if st["b"]: attrs += ' font-weight="bold"'
                if st["d"]: attrs += ' opacity="0.6"'
                if st["i"]: attrs += ' font-style="italic"'
                if st["u"]: attrs += ' text-decoration="underline"'
                out.append(f'<text x="{x * cw:.1f}" y="{y * ch + 13}" textLength="{n * cw:.1f}" '
                           f'lengthAdjust="spacingAndGlyphs" {attrs} xml:space="preserve">{escape(text)}</text>')
            x = end
    out.append("</svg>")
    print("\n".join(out))


if __name__ == "__main__":
    main()
