"""Build hook: compile the gettext catalogs as part of every build, editable installs included.

`pip install .`, `pip install -e .` (the Makefile and the Dockerfile) and wheel builds run
Babel's compile_catalog before build_py, so quickcart/locale/*/LC_MESSAGES/messages.mo exist in
the source tree (editable) and in the wheel. Everything else is in pyproject.toml.
"""

from babel.messages.setuptools_frontend import compile_catalog
from setuptools import setup
from setuptools.command.build import build


class CompileCatalogs(compile_catalog):
    """Babel's compile_catalog, pointed at quickcart/locale."""

    editable_mode = False

    def initialize_options(self) -> None:
        """Babel's defaults, with the project's catalog directory."""
        super().initialize_options()
        self.directory = "quickcart/locale"

    def run(self) -> None:
        """Compile, and fail the build on a broken catalog rather than ship it."""
        if super().run():
            raise SystemExit("a message catalog does not compile")

    def get_outputs(self) -> list[str]:
        """The .mo files (setuptools asks build sub-commands for them)."""
        return []

    def get_output_mapping(self) -> dict[str, str]:
        """Nothing to map: the .mo files are written beside their .po in the source tree."""
        return {}

    def get_source_files(self) -> list[str]:
        """The .po files are package data already."""
        return []


class Build(build):
    """setuptools' build, catalogs first (so build_py copies the .mo files)."""

    sub_commands = [("compile_catalogs", None), *build.sub_commands]


setup(cmdclass={"build": Build, "compile_catalogs": CompileCatalogs})
