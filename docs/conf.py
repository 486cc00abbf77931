# Sphinx configuration of era's API reference (`make docs` builds it into build/docs).
#
# The Python pages are autodoc over the installed era_jax and era_torch; the C page is
# generated from include/era.h by the extension in _ext/era_c_abi.py; the Rust API is
# rustdoc's (`cargo doc`, copied to build/docs/rust by the Makefile); the guides are the
# Markdown pages of this folder, read by myst-parser.
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_ext"))

project = "era"
author = "the era authors"
copyright = "the era authors"  # noqa: A001 (Sphinx's name)
release = version = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
    "era_c_abi",
    "era_repo_links",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_extra", "requirements.txt"]

# era.h, relative to this folder (the C page reads it when the build starts)
era_header = os.path.join(os.path.dirname(__file__), "..", "include", "era.h")

autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_inherit_docstrings = False  # the adapters subclass SB3, SBX and TRL classes
napoleon_google_docstring = True
napoleon_numpy_docstring = True

# The guides link to each other by file name and to sections by their slugs.
myst_heading_anchors = 4
myst_enable_extensions = ["dollarmath"]

html_theme = "alabaster"
html_title = "era " + release
html_static_path = []
# rust/index.html: a page that leads to rustdoc's pages, which `make docs` copies into rust/
html_extra_path = ["_extra"]
html_copy_source = False
html_show_sourcelink = False
