"""Sphinx configuration of the pyro-node-uq documentation (``make docs``)."""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))  # document this checkout, not an installed copy

import pyro_node_uq

project = "pyro-node-uq"
author = "pyro-node-uq developers"
copyright = "2026, pyro-node-uq developers"
version = release = pyro_node_uq.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx.ext.intersphinx",
]
autodoc_default_options = {"show-inheritance": True}
autodoc_member_order = "bysource"
autoclass_content = "both"  # class docstring plus __init__ docstring, as in Pyro's docs
add_module_names = False
intersphinx_mapping = {}  # no network at build time: cross-links to Pyro/torch stay plain text
nitpicky = False

exclude_patterns = ["_build", "images/README*"]
templates_path = []
master_doc = "index"
pygments_style = "sphinx"

try:
    import sphinx_rtd_theme  # noqa: F401

    html_theme = "sphinx_rtd_theme"
except ImportError:  # the docs extra installs it; fall back to Sphinx's built-in theme
    html_theme = "alabaster"
html_static_path = []
html_title = f"pyro-node-uq {release}"
