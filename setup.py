"""Build script for the one compiled module (pcapsense/capture/_engine.c); all metadata
lives in pyproject.toml."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "pcapsense.capture._engine",
            sources=["pcapsense/capture/_engine.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wno-unused-function"],
        )
    ]
)
