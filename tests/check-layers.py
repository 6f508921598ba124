#!/usr/bin/env python3
"""
check-layers.py - broker/ depends one way: each file may include only
headers of its own layer or a lower one (README.md, "Layout").

A module is a .c file and its .h; every one of them is in the table below,
so a new file has to be given a layer before the build passes.  Modules of
one layer may include each other; a higher layer's header is an error, and
so is a private header (PRIVATE) outside the modules it serves.

usage: check-layers.py BROKER_DIR
"""
import os
import re
import sys

LAYERS = [
    # 0, base: no broker state; protocol/ and the generated config.h too
    ["codec", "frame", "scram", "config",
     "log", "clock", "crc32c", "heap", "hist", "list", "lease", "dedup",
     "pattern", "record", "trace", "options", "users", "worker", "journal",
     "journal-index", "journal-int", "turn"],
    # 1, state: struct core (core.h) and the queues and store it holds
    ["core", "store", "page", "msg", "topic", "group"],
    # 2, one connection's byte stream and output gate
    ["conn"],
    # 3, delivery: pumps, members, leases, compaction
    ["delivery", "sub", "compact"],
    # 4, front: what frames mean, login, listeners, metrics, systemd
    ["request", "inspect", "auth", "tls", "server", "metrics", "service"],
    # 5, the loop: sets everything up, drains the turn's work
    ["broker"],
    # 6, the daemon's main()
    ["main"],
]

LAYER = {m: i for i, mods in enumerate(LAYERS) for m in mods}

# Private headers: only these modules may include them.
PRIVATE = {"journal-int": {"journal", "journal-index"}}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)\.h"', re.M)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    top = sys.argv[1]
    errors = []
    files = sorted(f for f in os.listdir(top) if f.endswith((".c", ".h")))
    if not files:
        errors.append("%s: no .c or .h files" % top)
    for name in files:
        mod = name.rsplit(".", 1)[0]
        if mod not in LAYER:
            errors.append("%s: not in the layer table of %s" %
                          (name, os.path.basename(__file__)))
            continue
        with open(os.path.join(top, name)) as f:
            text = f.read()
        for inc in INCLUDE.findall(text):
            if inc not in LAYER:
                errors.append("%s includes %s.h, which is not in the "
                              "layer table" % (name, inc))
            elif inc in PRIVATE and mod not in PRIVATE[inc] | {inc}:
                errors.append("%s includes %s.h, private to %s" %
                              (name, inc, ", ".join(sorted(PRIVATE[inc]))))
            elif LAYER[inc] > LAYER[mod]:
                errors.append("%s (layer %d) includes %s.h (layer %d): "
                              "dependencies point down only" %
                              (name, LAYER[mod], inc, LAYER[inc]))
    for e in errors:
        print(e)
    print("%d files, %d layering errors" % (len(files), len(errors)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
