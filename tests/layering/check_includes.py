#!/usr/bin/env python3
"""Checks every project #include against the layer graph the build links.

The graph is layers.json, written by CMake (cmake/EmberLayer.cmake) from the ember_layer()
declarations: per layer its directory, the layers it links ("deps"; "public_deps" pass
visibility on, as PUBLIC links do) and the include prefixes it exports ("net" ->
"src/net", "ember/status.h" -> "include/ember/status.h"). A file may include a header
of its own layer, or of a layer it links, or of a layer those export PUBLICly, and
nothing else. Also refused: includes that climb with "..", headers no layer exports,
source files outside every layer, and a cycle in the graph.

  python3 tests/layering/check_includes.py --graph build/layers.json .

Prints one line per violation, "path:line: ... forbidden edge A -> B", and exits 1.
"""

import argparse
import json
import os
import re
import sys

SCAN_DIRS = ("src", "include", "apps", "examples", "bench")
# Files outside every layer are an error only here; elsewhere (e.g. bench/ in a build
# without benchmarks) their layer may just not be configured.
LAYERED_DIRS = ("src", "include")
SOURCE_SUFFIXES = (".h", ".hh", ".hpp", ".inc", ".ipp", ".c", ".cc", ".cpp", ".cxx")
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


class Graph:
    def __init__(self, layers):
        self.layers = layers
        # include prefix -> layer, and source path -> layer (for owning files)
        self.exports = {}
        self.paths = {}
        for name, layer in layers.items():
            self.paths[layer["dir"]] = name
            for prefix, path in layer.get("exports", {}).items():
                self.exports[prefix] = name
                self.paths.setdefault(path, name)

    def errors(self):
        """Links to unknown layers and cycles, as messages."""
        out = []
        for name, layer in sorted(self.layers.items()):
            for dep in layer["deps"] + layer["public_deps"]:
                if dep not in self.layers:
                    out.append(f"layer {name} links unknown layer {dep}")
        cycle = self._cycle()
        if cycle:
            out.append("layers link in a cycle: " + " -> ".join(cycle))
        return out

    def _cycle(self):
        state = {}

        def visit(name, stack):
            state[name] = "open"
            for dep in self.layers[name]["deps"]:
                if dep not in self.layers:
                    continue
                if state.get(dep) == "open":
                    return stack[stack.index(dep):] + [dep]
                if dep not in state:
                    found = visit(dep, stack + [dep])
                    if found:
                        return found
            state[name] = "done"
            return None

        for name in sorted(self.layers):
            if name not in state:
                found = visit(name, [name])
                if found:
                    return found
        return None

    def visible(self, name, seen=None):
        """The layer and every layer its PUBLIC links reach."""
        seen = set() if seen is None else seen
        if name in seen or name not in self.layers:
            return seen
        seen.add(name)
        for dep in self.layers[name]["public_deps"]:
            self.visible(dep, seen)
        return seen

    def allowed(self, name):
        out = {name}
        for dep in self.layers[name]["deps"]:
            out |= self.visible(dep)
        return out

    def owner_of_file(self, rel):
        """The layer whose directory or exported path holds `rel` (longest match)."""
        best = None
        for path, name in self.paths.items():
            if rel == path or rel.startswith(path + "/"):
                if best is None or len(path) > len(best[0]):
                    best = (path, name)
        return best[1] if best else None

    def owners_of_include(self, inc):
        """Layers exporting the include path `inc`, most specific first."""
        matches = [(p, n) for p, n in self.exports.items() if inc == p or inc.startswith(p + "/")]
        return [n for _, n in sorted(matches, key=lambda m: -len(m[0]))]


def source_files(root):
    for top in SCAN_DIRS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(filenames):
                if f.endswith(SOURCE_SUFFIXES):
                    yield os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/")


def includes(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            m = INCLUDE.match(line)
            if m:
                yield number, m.group(1) == '"', m.group(2)


def check_include(graph, root, rel, layer, quoted, inc):
    """A message if including `inc` from file `rel` of `layer` breaks the layering."""
    if ".." in inc.split("/"):
        return f'#include "{inc}" climbs out of its directory; include "<layer>/..." instead'
    beside = os.path.join(os.path.dirname(rel), inc)
    if quoted and os.path.isfile(os.path.join(root, beside)):
        owners = [graph.owner_of_file(beside)]  # the compiler looks beside the file first
    else:
        owners = graph.owners_of_include(inc)
        if not owners:
            return f'#include "{inc}" names no header a layer exports' if quoted else None
    allowed = graph.allowed(layer)
    if any(o in allowed for o in owners):
        return None
    target = owners[0]
    spelled = f'"{inc}"' if quoted else f"<{inc}>"
    return (f"#include {spelled} is layer {target}, which {layer} does not link: "
            f"forbidden edge {layer} -> {target} (allowed: {', '.join(sorted(allowed))})")


def check(root, graph):
    """All violations under `root`, as "path:line: message" lines."""
    out = list(graph.errors())
    for rel in source_files(root):
        layer = graph.owner_of_file(rel)
        if layer is None:
            if rel.split("/")[0] in LAYERED_DIRS:
                out.append(f"{rel}:1: belongs to no layer (no ember_layer() for its directory)")
            continue
        for number, quoted, inc in includes(os.path.join(root, rel)):
            message = check_include(graph, root, rel, layer, quoted, inc)
            if message:
                out.append(f"{rel}:{number}: {message}")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", required=True, help="layers.json from the build directory")
    parser.add_argument("root", help="source tree to check")
    args = parser.parse_args(argv)
    with open(args.graph) as f:
        graph = Graph(json.load(f)["layers"])
    violations = check(args.root, graph)
    for v in violations:
        print(v)
    if violations:
        print(f"layering: {len(violations)} violation(s); the graph is the DEPS of the "
              f"ember_layer() calls (docs/architecture.md)", file=sys.stderr)
        return 1
    print(f"layering: every #include follows the graph of {len(graph.layers)} layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
