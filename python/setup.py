"""Installs the moec package together with libMoEC and moec's graphs.

`pip install ./python` (after `swift build` or `swift build -c release` in the repository) copies
the newer of `.build/release/libMoEC.so` and `.build/debug/libMoEC.so` into the package as
`moec/lib/`, and the repository's `graphs/*.moe` as `moec/graphs/`. `MOEC_LIBRARY=/path/libMoEC.so`
at install time copies that file instead. Without a built library the install fails with a message.
"""
import glob
import os
import shutil
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.environ.get("MOEC_REPO", os.path.dirname(HERE))
LIBRARY = "libMoEC.dylib" if sys.platform == "darwin" else "libMoEC.so"


def built_library():
    if os.environ.get("MOEC_LIBRARY"):
        return os.environ["MOEC_LIBRARY"]
    builds = [os.path.join(REPO, ".build", c, LIBRARY) for c in ("release", "debug")]
    builds = [b for b in builds if os.path.exists(b)]
    if not builds:
        raise SystemExit(f"moec: no {LIBRARY} in {REPO}/.build/release or .build/debug: run 'swift build -c release' "
                         "in the repository first (or set MOEC_LIBRARY to a built libMoEC)")
    return max(builds, key=os.path.getmtime)


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        package = os.path.join(self.build_lib, "moec")
        os.makedirs(os.path.join(package, "lib"), exist_ok=True)
        shutil.copy2(built_library(), os.path.join(package, "lib", LIBRARY))
        graphs = sorted(glob.glob(os.path.join(REPO, "graphs", "*.moe")))
        if not graphs:
            raise SystemExit(f"moec: no graphs in {REPO}/graphs")
        os.makedirs(os.path.join(package, "graphs"), exist_ok=True)
        for g in graphs:
            shutil.copy2(g, os.path.join(package, "graphs"))


class BinaryDistribution(Distribution):
    """The wheel carries a native library: tag it for this platform."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildWithLibrary}, distclass=BinaryDistribution)
