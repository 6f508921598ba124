#!/usr/bin/env python3
"""check-client-layers.py - libferry's files call each other one way only.

ferry-int.h puts the files in layers (core.c lowest; tls.c and connopts.c;
the drivers sync.c, async.c and inspect.c; reconnect.c on top).  A file
may call the functions of its own layer and those below; a lower one
reaches a higher one only through a hook in the handle.  This reads the
sources: every lf_* or ferry_* function defined in one file (its name at
the start of a line, as the style puts it) and called from another (after
comments and strings are removed) is an edge, which must not point
upward, and the files' graph must have no cycle.  (check-layers.py does
the same for broker/, by includes.)

Usage: check-client-layers.py CLIENT_DIR.  Exit 0 when the layering holds,
1 with the offending calls listed otherwise.
"""
import os
import re
import sys

LAYERS = {
    "core.c": 1,
    "tls.c": 2,
    "connopts.c": 2,
    "sync.c": 3,
    "async.c": 3,
    "inspect.c": 3,
    "async-libevent.c": 3,
    "reconnect.c": 4,
}

DEF = re.compile(r"^((?:lf|ferry)_\w+)\(", re.M)
CALL = re.compile(r"\b((?:lf|ferry)_\w+)\s*\(")
NOISE = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'',
                   re.S)


def strip(src):
    # Keep the newlines of comments so that line starts stay line starts.
    return NOISE.sub(lambda m: "\n" * m.group(0).count("\n"), src)


def main():
    cdir = sys.argv[1]
    text, owner = {}, {}
    for name in LAYERS:
        with open(os.path.join(cdir, name), encoding="utf-8") as fp:
            text[name] = strip(fp.read())
        for fn in DEF.findall(text[name]):
            owner[fn] = name
    if len(owner) < 50:
        print(f"only {len(owner)} functions found in {cdir}: wrong place?")
        return 1
    edges, bad = {}, []
    for name, src in text.items():
        defined = set(DEF.findall(src))
        for fn in set(CALL.findall(src)) - defined:
            callee = owner.get(fn)
            if callee is None or callee == name:
                continue
            edges.setdefault(name, set()).add(callee)
            if LAYERS[callee] > LAYERS[name]:
                bad.append(f"{name} (layer {LAYERS[name]}) calls {fn}() "
                           f"of {callee} (layer {LAYERS[callee]})")
    # A cycle among files of one layer is a circle too.
    state = {}

    def visit(n, path):
        state[n] = 1
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                bad.append("cycle: " + " -> ".join(path + [n, m]))
            elif m not in state:
                visit(m, path + [n])
        state[n] = 2

    for n in sorted(LAYERS):
        if n not in state:
            visit(n, [])
    for b in bad:
        print(b)
    if not bad:
        print(f"{len(owner)} functions, {sum(map(len, edges.values()))} "
              "file-to-file edges, all pointing down")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
