#!/usr/bin/env python3
# Embed a text file as a C string: embed.py IN OUT SYMBOL (the OpenAPI document).
import sys

data = open(sys.argv[1], encoding="utf-8").read()
out = ['/* generated from %s by tools/embed.py */' % sys.argv[1].split("/")[-1],
       "const char %s[] =" % sys.argv[3]]
for line in data.splitlines(True):
    esc = line.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    out.append('    "%s"' % esc)
out.append("    ;")
open(sys.argv[2], "w", encoding="utf-8").write("\n".join(out) + "\n")
