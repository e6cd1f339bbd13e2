"""Builds pycontainer._core from pycontainer/_core.pyx and the plain C in csrc/."""
from glob import glob

from Cython.Build import cythonize
from setuptools import Extension, setup

core = Extension(
    "pycontainer._core",
    sources=["pycontainer/_core.pyx"] + sorted(glob("csrc/*.c")),
    include_dirs=["csrc"],
    define_macros=[("_GNU_SOURCE", "1")],
    extra_compile_args=["-O2", "-Wall", "-Wno-unused-function", "-fno-strict-aliasing"],
)

setup(ext_modules=cythonize([core], language_level=3,
                            compiler_directives={"embedsignature": True}))
