"""Links from the guides to files of the repository that are not pages of this site.

The guides (docs/*.md) are read on GitHub-like viewers too, where a link such as
``[BENCHMARKS.md](../BENCHMARKS.md)`` opens the file. The reference holds only docs/, so
such a link becomes its text here; a link to a file that does not exist stays an error.
"""

import os

from sphinx import addnodes
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging

logger = logging.getLogger(__name__)


class RepositoryLinks(SphinxPostTransform):
    default_priority = 8  # before myst-parser's resolver (9), which would warn

    def run(self, **kwargs):
        srcdir = str(self.env.srcdir)
        root = os.path.dirname(os.path.abspath(srcdir))
        for node in list(self.document.findall(addnodes.pending_xref)):
            if node.get("reftype") != "myst" or node.get("refdomain") != "doc":
                continue
            target = node["reftarget"]
            if target in self.env.all_docs:
                continue
            path = os.path.normpath(os.path.join(srcdir, target))
            if os.path.commonpath([path, srcdir]) == srcdir:
                continue  # a page of the site that is missing: myst-parser reports it
            found = [p for p in (path, path + ".md") if os.path.exists(p)]
            if os.path.commonpath([path, root]) != root or not found:
                logger.warning("link to %s, which is not in the repository", target, location=node)
            node.replace_self(node[0].deepcopy())


def setup(app):
    app.add_post_transform(RepositoryLinks)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
