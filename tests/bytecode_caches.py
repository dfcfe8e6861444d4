"""Bytecode caches for the suite's own processes, switched on before anything else is imported.

Where PYTHONDONTWRITEBYTECODE is set (CI sets it), every xdist worker rewrote the tests again and
every kernel, nbval run and CLI process this suite starts compiled the package from source again:
about a fifth of the suite's CPU. Imported first by conftest.py, so the package's own modules are
cached too, and the environment change reaches the workers and every child process. The caches
go to __pycache__ folders, which git ignores and the sdist and wheel never ship (MANIFEST.in;
tests/test_release.py checks what they hold).
"""

from __future__ import annotations

import os
import sys

os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False
