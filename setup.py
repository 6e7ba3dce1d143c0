"""Build script for the compiled modules (pcapsense/capture/_engine.c,
pcapsense/app/_segments.c, pcapsense/app/_http1.c,
pcapsense/render/_jsonrows.c); all metadata
lives in pyproject.toml."""
from setuptools import Extension, setup


def _ext(name: str, source: str) -> Extension:
    return Extension(name, sources=[source], extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wno-unused-function"])


setup(
    ext_modules=[
        _ext("pcapsense.capture._engine", "pcapsense/capture/_engine.c"),
        _ext("pcapsense.app._segments", "pcapsense/app/_segments.c"),
        _ext("pcapsense.app._http1", "pcapsense/app/_http1.c"),
        _ext("pcapsense.render._jsonrows", "pcapsense/render/_jsonrows.c"),
    ]
)
