"""Build script for the compiled modules (the engine, pcapsense/capture/engine/*.c;
pcapsense/app/_segments.c, pcapsense/app/_http1.c, pcapsense/render/_jsonrows.c); all
metadata lives in pyproject.toml."""
from setuptools import Extension, setup

ENGINE = ["records", "layers", "frag", "tcp", "app", "tls_frame", "module"]


def _ext(name: str, *sources: str) -> Extension:
    return Extension(name, sources=list(sources), include_dirs=["pcapsense/capture/engine"],
                     depends=["pcapsense/capture/engine/engine.h"],
                     extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wno-unused-function"])


setup(
    ext_modules=[
        _ext("pcapsense.capture._engine", *[f"pcapsense/capture/engine/{u}.c" for u in ENGINE]),
        _ext("pcapsense.app._segments", "pcapsense/app/_segments.c"),
        _ext("pcapsense.app._http1", "pcapsense/app/_http1.c"),
        _ext("pcapsense.render._jsonrows", "pcapsense/render/_jsonrows.c"),
    ]
)
