#!/usr/bin/env python3
"""Checks that README.md shows generated-examples/first-service as it is.

Each file of the example appears in the README after a line
`<!-- generated-examples/first-service/NAME -->` as one fenced block; the
block must equal the file. So the README's "Your first service" is what CI
builds (run_first_service.sh).
"""
import os
import re
import sys

root = sys.argv[1]
readme = open(os.path.join(root, "README.md"), encoding="utf-8").read()
example = "generated-examples/first-service"
failed = False
for name in sorted(os.listdir(os.path.join(root, example))):
    path = f"{example}/{name}"
    m = re.search(r"<!-- " + re.escape(path) + r" -->\n```[a-z]*\n(.*?)```\n",
                  readme, re.S)
    if m is None:
        print(f"README.md does not show {path}")
        failed = True
        continue
    if m.group(1) != open(os.path.join(root, path), encoding="utf-8").read():
        print(f"README.md shows {path} differently from the file")
        failed = True
sys.exit(1 if failed else 0)
