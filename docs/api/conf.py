"""Sphinx configuration of the API reference (``sphinx-build -W -b html docs/api <out>``).

Built from the numpydoc docstrings; ``nitpicky`` makes every unresolved cross reference a warning,
and ``-W`` (tests/test_docs.py, CI) makes a warning a failure: a broken reference fails the build.
"""

project = "fundguard"
author = "fundguard developers"
copyright = "2026, fundguard developers"  # noqa: A001
extensions = ["sphinx.ext.autodoc", "numpydoc", "sphinx.ext.intersphinx"]
root_doc = "index"
exclude_patterns = ["_build"]
nitpicky = True
autodoc_typehints = "none"          # the types are in the numpydoc sections
autodoc_member_order = "bysource"
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
intersphinx_mapping = {}            # no network: references outside fundguard are written as plain text
html_theme = "alabaster"
html_title = "fundguard API reference"
suppress_warnings = []


# -- references -------------------------------------------------------------------------------------
# The docstrings name objects by the module that defines them (fundguard.models.data.load_ohlc), by
# the package that exports them (fundguard.models.load_ohlc) or relative to where they are written
# (:meth:`map` in ScenarioSet). A reference Sphinx cannot place is resolved here by importing what
# it names: to the page where that object is documented, or as plain text when it exists but is
# not part of the reference (a module's helper). A name that imports nothing stays a warning, and
# -W makes it a failure: that is a broken reference.

_documented: dict[int, str] = {}


def _locate(name: str):
    """The object ``name`` names, importing its module by the longest prefix that is one (so that
    ``fundguard.models.venue.replay.ewma_volatility`` is found although the package's ``replay``
    attribute is the function of that name)."""
    import importlib

    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except Exception:  # noqa: BLE001 - not a module: try a shorter prefix
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _candidates(node) -> list[str]:
    """Where the name may live: as written, then inside each enclosing scope of the page's module
    and class, then of the object whose docstring holds the reference (its defining module)."""
    import re

    target = node["reftarget"].lstrip("~.")
    module, cls = node.get("py:module") or "", node.get("py:class") or ""
    out = [target]
    scopes = [f"{module}.{cls}" if cls else module]
    source = re.search(r"docstring of ([\w.]+)", node.source or "")
    if source:
        scopes.append(source.group(1))
    for scope in scopes:
        parts = scope.split(".") if scope else []
        while parts:
            out.append(f"{'.'.join(parts)}.{target}")
            parts.pop()
    return out


def _missing_reference(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    if not _documented:
        for name, *_ in domain.get_objects():
            obj = _locate(name)
            if obj is not None:
                _documented.setdefault(id(obj), name)
    for candidate in _candidates(node):
        obj = _locate(candidate)
        if obj is None:
            continue
        name = _documented.get(id(obj))
        if name is not None:
            found = domain.resolve_any_xref(env, node["refdoc"], app.builder, name, node, contnode)
            return found[0][1] if found else contnode
        return contnode  # it exists, outside the reference: plain text
    return None


def setup(app):
    app.connect("missing-reference", _missing_reference)
