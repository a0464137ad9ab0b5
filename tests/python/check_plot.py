#!/usr/bin/python3
"""Runs jobs/plot_archive.py on an archive and checks that it wrote two non-trivial PNG files.

    check_plot.py PLOT_SCRIPT ARCHIVE OUTDIR
"""
import os
import subprocess
import sys

script, archive, outdir = sys.argv[1:4]
result = subprocess.run([sys.executable, script, archive, "-o", outdir], capture_output=True, text=True)
if result.returncode != 0:
    sys.exit(f"check_plot.py: plot_archive.py failed ({result.returncode}):\n{result.stderr}")
written = result.stdout.split()
if len(written) != 2:
    sys.exit(f"check_plot.py: expected two files, got {written}")
for path in written:
    with open(path, "rb") as f:
        head = f.read(8)
    if head != b"\x89PNG\r\n\x1a\n" or os.path.getsize(path) < 10000:
        sys.exit(f"check_plot.py: {path} is not a drawn PNG ({os.path.getsize(path)} bytes)")
print("check_plot.py: wrote " + " and ".join(written))
