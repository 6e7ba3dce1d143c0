"""Build script for the compiled modules (pcapsense/capture/_engine.c,
pcapsense/app/_segments.c, pcapsense/app/_http1.c); all metadata
lives in pyproject.toml."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "pcapsense.capture._engine",
            sources=["pcapsense/capture/_engine.c"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wno-unused-function"],
        ),
        Extension(
            "pcapsense.app._segments",
            sources=["pcapsense/app/_segments.c"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wno-unused-function"],
        ),
        Extension(
            "pcapsense.app._http1",
            sources=["pcapsense/app/_http1.c"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wno-unused-function"],
        ),
    ]
)
