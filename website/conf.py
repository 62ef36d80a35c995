"""Sphinx configuration of the course website (built by ``website/build.py``).

Sphinx + MyST-NB + the Sphinx Book Theme: the same stack as Jupyter Book 1, configured here
directly (one file, and autodoc, the search and the MathJax path are plain Sphinx options).
Notebooks are never executed; MathJax 3 comes from the site itself (``_static/mathjax``,
copied there from the npm package by the builder), never from a CDN.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from course_site import find_repository  # noqa: E402

repo = find_repository()

project = "nvp-edu"
html_title = "nvp-edu: Real NVP, one concept at a time"
copyright = "the nvp-edu authors, MIT license"

extensions = [
    "myst_nb",               # .ipynb and MyST markdown pages
    "sphinx.ext.autodoc",    # the API pages, from the docstrings
    "sphinx.ext.napoleon",   # the docstrings' "Args:" / "Example:" sections
    "sphinx.ext.viewcode",   # highlighted source of every module, inside the site
    "plain_docstrings",      # the docstrings' indented formulas, shown as written
]

# Committed outputs only: building the website must not run (or need) a kernel.
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# MathJax 3 served by the site: relative to _static (the builder copies it there).
mathjax_path = "mathjax/tex-chtml.js"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
# A forward() without its own docstring would show torch's nn.Module text: leave it out.
autodoc_inherit_docstrings = False
napoleon_numpy_docstring = False

exclude_patterns = ["_build", "**.ipynb_checkpoints", "warnings.log"]
html_theme = "sphinx_book_theme"
html_theme_options = {
    "repository_url": repo.url,
    "repository_branch": repo.branch,
    "use_repository_button": True,
    "use_download_button": False,   # the staged copies carry the run box, which links the source
    "home_page_in_toc": False,  # the title above the menu links home
    "show_navbar_depth": 1,
}
html_static_path = ["static"]
html_css_files = ["course.css"]
html_copy_source = False            # search snippets come from the pages themselves
html_show_sourcelink = False
html_last_updated_fmt = None
