"""Tests of check_includes.py: fixture trees with a small graph, and a copy of the real
tree (with the build's layers.json, EMBER_LAYER_GRAPH) with a wrong include added.

  EMBER_LAYER_GRAPH=build/layers.json python3 -m unittest tests/layering/check_includes_test.py
"""

import contextlib
import io
import json
import os
import shutil
import tempfile
import unittest

import check_includes

# base <- wire <- net (PUBLIC), app -> net; base also exports the public ember/status.h
# and client the whole ember/ API.
GRAPH = {
    "base": {"dir": "src/base", "deps": [], "public_deps": [],
             "exports": {"base": "src/base", "ember/status.h": "include/ember/status.h"}},
    "wire": {"dir": "src/wire", "deps": ["base"], "public_deps": ["base"], "exports": {"wire": "src/wire"}},
    "net": {"dir": "src/net", "deps": ["wire"], "public_deps": ["wire"], "exports": {"net": "src/net"}},
    "client": {"dir": "src/client", "deps": ["base"], "public_deps": ["base"],
               "exports": {"client": "src/client", "ember": "include/ember"}},
    "apps": {"dir": "apps/ember", "deps": ["net"], "public_deps": [], "exports": {}},
}

CLEAN = {
    "include/ember/status.h": "#pragma once\n",
    "include/ember/client.h": '#pragma once\n#include "ember/status.h"\n',
    "src/base/status.h": '#pragma once\n#include "ember/status.h"\n',
    "src/base/fuzz/harness.h": '#pragma once\n#include "base/status.h"\n',
    "src/base/fuzz/harness.cc": '#include "harness.h"\n#include <vector>\n',
    "src/wire/frame.h": '#pragma once\n#include <cstdint>\n#include "base/status.h"\n',
    "src/wire/frame.cc": '#include "wire/frame.h"\n',
    "src/net/connection.cc": '// base through wire\'s PUBLIC link\n#include "base/status.h"\n#include "wire/frame.h"\n',
    "src/client/client.cc": '#include "ember/client.h"\n#include "base/status.h"\n',
    "apps/ember/main.cc": '#include "net/connection.h"\n#include "base/status.h"\n',
    "apps/ember/notes.txt": '#include "client/anything.h"\n',
}


def write_tree(root, files):
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


def run_check(root, graph):
    """(exit code, stdout) of the check's command line on `root` with `graph`."""
    graph_file = os.path.join(root, "layers.json")
    with open(graph_file, "w") as f:
        json.dump({"layers": graph}, f)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = check_includes.main(["--graph", graph_file, root])
    return code, out.getvalue()


class FixtureTree(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="layering-")
        self.addCleanup(shutil.rmtree, self.root)
        write_tree(self.root, CLEAN)

    def check(self, graph=GRAPH):
        return run_check(self.root, graph)

    def add(self, rel, text):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a") as f:
            f.write(text)

    def test_a_clean_tree_passes(self):
        code, out = self.check()
        self.assertEqual(code, 0, out)

    def test_an_upward_include_fails_naming_file_line_and_edge(self):
        self.add("src/wire/frame.cc", '#include <string>\n#include "net/connection.h"\n')
        code, out = self.check()
        self.assertEqual(code, 1)
        self.assertIn("src/wire/frame.cc:3:", out)
        self.assertIn("forbidden edge wire -> net", out)
        self.assertEqual(len(out.splitlines()), 1, out)

    def test_an_include_of_an_unlinked_sibling_fails(self):
        self.add("src/client/client.cc", '#include "wire/frame.h"\n')
        code, out = self.check()
        self.assertEqual(code, 1)
        self.assertIn("src/client/client.cc:3: ", out)
        self.assertIn("forbidden edge client -> wire", out)

    def test_a_project_header_in_angle_brackets_is_checked_too(self):
        self.add("src/base/status.h", "#include <wire/frame.h>\n")
        code, out = self.check()
        self.assertIn("src/base/status.h:3: #include <wire/frame.h>", out)
        self.assertIn("forbidden edge base -> wire", out)

    def test_a_subdirectory_belongs_to_its_layer(self):
        self.add("src/base/fuzz/harness.cc", '#include "net/connection.h"\n')
        code, out = self.check()
        self.assertIn("src/base/fuzz/harness.cc:3:", out)
        self.assertIn("forbidden edge base -> net", out)

    def test_only_public_links_pass_visibility_on(self):
        graph = json.loads(json.dumps(GRAPH))
        graph["net"]["public_deps"] = []  # net links wire PRIVATE
        self.add("apps/ember/main.cc", '#include "wire/frame.h"\n')
        code, out = self.check(graph)
        self.assertIn("apps/ember/main.cc:3:", out)
        self.assertIn("forbidden edge apps -> wire", out)

    def test_the_public_api_is_visible_only_through_the_layer_exporting_it(self):
        self.add("src/wire/frame.h", '#include "ember/client.h"\n')
        code, out = self.check()
        self.assertIn("src/wire/frame.h:4:", out)
        self.assertIn("forbidden edge wire -> client", out)

    def test_an_include_climbing_out_of_its_directory_fails(self):
        self.add("src/net/connection.cc", '#include "../wire/frame.h"\n')
        code, out = self.check()
        self.assertEqual(code, 1)
        self.assertIn('src/net/connection.cc:4: #include "../wire/frame.h" climbs', out)

    def test_a_header_no_layer_exports_fails(self):
        self.add("src/net/connection.cc", '#include "proto/fl.h"\n')
        code, out = self.check()
        self.assertIn('src/net/connection.cc:4: #include "proto/fl.h" names no header a layer exports', out)

    def test_a_source_file_outside_every_layer_fails(self):
        self.add("src/proto/fl.cc", '#include "base/status.h"\n')
        code, out = self.check()
        self.assertIn("src/proto/fl.cc:1: belongs to no layer", out)

    def test_a_cycle_in_the_graph_fails(self):
        graph = json.loads(json.dumps(GRAPH))
        graph["base"]["deps"] = ["net"]
        code, out = self.check(graph)
        self.assertEqual(code, 1)
        self.assertIn("layers link in a cycle: net -> wire -> base -> net", out)


@unittest.skipUnless(os.environ.get("EMBER_LAYER_GRAPH"), "needs EMBER_LAYER_GRAPH (build/layers.json)")
class RealTree(unittest.TestCase):
    """A copy of the real source tree, checked with the graph the build wrote."""

    def setUp(self):
        with open(os.environ["EMBER_LAYER_GRAPH"]) as f:
            self.graph = json.load(f)["layers"]
        source = os.environ.get("EMBER_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")
        self.root = tempfile.mkdtemp(prefix="layering-real-")
        self.addCleanup(shutil.rmtree, self.root)
        ignore = shutil.ignore_patterns("corpus", "regressions", "*.py", "*.safetensors", "__pycache__")
        for top in check_includes.SCAN_DIRS:
            shutil.copytree(os.path.join(source, top), os.path.join(self.root, top), ignore=ignore)

    def test_the_real_tree_passes(self):
        code, out = run_check(self.root, self.graph)
        self.assertEqual(code, 0, out)

    def test_a_wire_file_including_fl_fails_naming_it(self):
        path = os.path.join(self.root, "src", "wire", "frame.cc")
        with open(path) as f:
            lines = f.read().splitlines(keepends=True)
        lines.insert(1, '#include "fl/server.h"\n')
        with open(path, "w") as f:
            f.writelines(lines)
        code, out = run_check(self.root, self.graph)
        self.assertEqual(code, 1)
        self.assertIn('src/wire/frame.cc:2: #include "fl/server.h" is layer fl', out)
        self.assertIn("forbidden edge wire -> fl", out)

    def test_a_cell_file_including_stream_fails_naming_it(self):
        path = os.path.join(self.root, "src", "cell", "cell.h")
        with open(path, "a") as f:
            f.write('#include "stream/download.h"\n')
        with open(path) as f:
            line = len(f.read().splitlines())
        code, out = run_check(self.root, self.graph)
        self.assertIn(f"src/cell/cell.h:{line}:", out)
        self.assertIn("forbidden edge cell -> stream", out)


if __name__ == "__main__":
    unittest.main()
