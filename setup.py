"""Builds pycontainer._core from pycontainer/_core.pyx and the plain C in csrc/, and the
join helper pycontainer/_join_helper: the same C linked statically into a small program
that a join execs (csrc/join_helper.c; see csrc/spawn.c)."""
import os
import shlex
import subprocess
from glob import glob

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HELPER_MAIN = "csrc/join_helper.c"
C_SOURCES = sorted(f for f in glob("csrc/*.c") if f != HELPER_MAIN)
CFLAGS = ["-O2", "-Wall", "-Wno-unused-function", "-fno-strict-aliasing"]

core = Extension(
    "pycontainer._core",
    sources=["pycontainer/_core.pyx"] + C_SOURCES,
    include_dirs=["csrc"],
    define_macros=[("_GNU_SOURCE", "1")],
    extra_compile_args=CFLAGS,
)


class BuildWithJoinHelper(build_ext):
    """build_ext, then the join helper next to the extension module."""

    def run(self):
        super().run()
        target = os.path.join(os.path.dirname(self.get_ext_fullpath(core.name)), "_join_helper")
        cc = shlex.split(os.environ.get("CC", "cc"))
        # -static-pie: its addresses differ from run to run, like any program's.
        cmd = [*cc, *CFLAGS, "-D_GNU_SOURCE", "-Icsrc", "-static-pie", "-fPIE", "-s", "-o",
               target, HELPER_MAIN, *C_SOURCES]
        self.announce(" ".join(cmd), level=2)
        subprocess.check_call(cmd)


setup(ext_modules=cythonize([core], language_level=3,
                            compiler_directives={"embedsignature": True}),
      cmdclass={"build_ext": BuildWithJoinHelper})
