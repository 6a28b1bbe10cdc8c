#!/usr/bin/env python3
"""check-layers: keep the crate under src/ layered and its pieces small.

Why: a layered architecture is only readable if dependencies point one way. Once two modules
import each other, neither can be read, tested or changed without the other, and the layers
melt into one. TigerStyle adds two hard limits on size: a function fits on a screen (70 lines),
and a file stays small enough to hold in your head.

What it checks (for the library crate rooted at src/lib.rs; src/main.rs and src/bin/*.rs are
leaf roots that nobody imports, their `<crate name>::` paths count like `crate::`):

1. Import cycles between source files. Every .rs file under src/ is a node (src/foo.rs and
   src/foo/mod.rs are module `foo`, src/foo/bar.rs is `foo::bar`). A file has an edge to every
   module it names through a path that starts with `crate::`, `super::` or `self::`: in `use`
   declarations (grouped imports such as `use crate::{a::{B, C}, d};` included, across lines)
   and inline in code (`crate::store::Order`), after comments and string literals are removed;
   and an edge parent -> child for each `mod child;`. A path goes to the LONGEST prefix of it
   that is a module file (`crate::store::schema::ORDERS` is src/store/schema.rs if that file
   exists, else src/store.rs or src/store/mod.rs). Anything inside a `#[cfg(test)]` item
   (a `mod tests { ... }` block, or a `#[cfg(test)] mod x;` file) is ignored: tests may import
   whatever they like. `pub(in crate::x)` visibility paths are not dependencies. Each strongly
   connected component with more than one file is reported, with one closed walk through all
   of its files and the line(s) behind every edge of that walk.
   Note: because `mod child;` is an edge, a child that uses an item of its parent
   (`super::Thing` resolving to the parent file) forms a cycle with it. Put shared items in a
   sibling module (`super::types::Thing`) instead; --no-mod-edges drops the parent -> child
   edges if you want to see the other cycles alone.
2. Files longer than --file-lines-max lines (default 600).
3. Functions (outside `#[cfg(test)]` items) longer than --fn-lines-max lines (default 70),
   counted from the `fn` line to the line of its closing brace. A comment
       // check-layers: allow-long-fn <reason>
   directly above the fn, or above its attributes / doc comment, exempts it; exemptions are
   listed with their reasons.
4. With --graph, the dependency graph: one line per edge, file -> file it uses.

Exit status: 0 if there is no cycle, no oversize file and no over-long function (exemptions
aside), 1 otherwise, 2 on usage errors. Findings go to stdout, one per line, `file:line: ...`,
then a one-line summary.

Usage: python3 scripts/check-layers.py [--graph] [--no-mod-edges] [--file-lines-max N]
                                       [--fn-lines-max N] [--root DIR] [--self-test]
Python 3.11, standard library only.
"""

from __future__ import annotations

import argparse
import bisect
import os
import re
import sys
import tempfile
import tomllib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

FILE_LINES_MAX = 600
FN_LINES_MAX = 70
ALLOW_RE = re.compile(r"^\s*//\s*check-layers:\s*allow-long-fn\b[ \t:]*(.*?)\s*$")
FN_QUALIFIERS = {"pub", "crate", "super", "self", "in", "async", "const", "unsafe", "extern", "default"}


# ----------------------------------------------------------------------------------------------
# Lexing: blank out comments and literals, then tokenize.


def sanitize(src: str) -> str:
    """Return `src` with comments blanked and string/char literals reduced to `"   "` / `'   '`.

    Same length, same newlines, so offsets and line numbers stay valid. Handles nested block
    comments, escapes, byte/C strings, raw strings r"..." / r#"..."#, and tells char literals
    ('{', '\\'', '\\u{7f}') from lifetimes ('a).
    """
    out = list(src)
    n = len(src)

    def blank(a: int, b: int, quote: str | None = None) -> None:
        for k in range(a, min(b, n)):
            if out[k] != "\n":
                out[k] = " "
        if quote is not None and b - a >= 2:
            out[a] = quote
            out[min(b, n) - 1] = quote

    def string_end(j: int) -> int:  # j is just after the opening quote
        while j < n:
            if src[j] == "\\":
                j += 2
            elif src[j] == '"':
                return j + 1
            else:
                j += 1
        return n

    i = 0
    while i < n:
        c = src[i]
        nxt = src[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c == '"':
            j = string_end(i + 1)
            blank(i, j, '"')
            i = j
        elif c == "'":
            j = char_literal_end(src, i)
            if j is None:  # a lifetime or a label: keep it
                i += 1
            else:
                blank(i, j, "'")
                i = j
        elif c.isalnum() or c == "_":
            j = i
            while j < n and (src[j].isalnum() or src[j] == "_"):
                j += 1
            word = src[i:j]
            if word in ("r", "br", "cr") and j < n and src[j] in '#"':
                k = j
                while k < n and src[k] == "#":
                    k += 1
                if k < n and src[k] == '"':
                    close = src.find('"' + "#" * (k - j), k + 1)
                    end = n if close < 0 else close + 1 + (k - j)
                    blank(i, end, '"')
                    i = end
                    continue
            if word in ("b", "c") and j < n and src[j] == '"':
                end = string_end(j + 1)
                blank(i, end, '"')
                i = end
                continue
            if word == "b" and j < n and src[j] == "'":
                end = char_literal_end(src, j)
                if end is not None:
                    blank(i, end, "'")
                    i = end
                    continue
            i = j
        else:
            i += 1
    return "".join(out)


def char_literal_end(src: str, i: int) -> int | None:
    """End offset of the char literal opening at src[i] == "'", or None for a lifetime."""
    n = len(src)
    if i + 1 < n and src[i + 1] == "\\":
        close = src.find("'", i + 3)
        return None if close < 0 else close + 1
    if i + 2 < n and src[i + 2] == "'" and src[i + 1] != "\n":
        return i + 3
    return None


@dataclass
class Tok:
    kind: str  # "id", "str", "char", "life", "p" (punctuation; "::" is one token)
    text: str
    pos: int


def tokenize(clean: str) -> list[Tok]:
    toks: list[Tok] = []
    n = len(clean)
    i = 0
    while i < n:
        c = clean[i]
        if c.isspace():
            i += 1
        elif c.isalnum() or c == "_":
            j = i
            while j < n and (clean[j].isalnum() or clean[j] == "_"):
                j += 1
            word = clean[i:j]
            if word == "r" and j + 1 < n and clean[j] == "#" and (clean[j + 1].isalpha() or clean[j + 1] == "_"):
                k = j + 1
                while k < n and (clean[k].isalnum() or clean[k] == "_"):
                    k += 1
                toks.append(Tok("id", clean[j + 1 : k], i))  # raw identifier r#name
                i = k
                continue
            toks.append(Tok("id", word, i))
            i = j
        elif c == '"':
            j = clean.find('"', i + 1)
            j = n - 1 if j < 0 else j
            toks.append(Tok("str", '""', i))
            i = j + 1
        elif c == "'":
            if i + 1 < n and (clean[i + 1].isalnum() or clean[i + 1] == "_"):
                j = i + 1
                while j < n and (clean[j].isalnum() or clean[j] == "_"):
                    j += 1
                toks.append(Tok("life", clean[i:j], i))
                i = j
            else:
                j = clean.find("'", i + 1)
                j = n - 1 if j < 0 else j
                toks.append(Tok("char", "''", i))
                i = j + 1
        elif c == ":" and i + 1 < n and clean[i + 1] == ":":
            toks.append(Tok("p", "::", i))
            i += 2
        else:
            toks.append(Tok("p", c, i))
            i += 1
    return toks


def match_brackets(toks: list[Tok]) -> dict[int, int]:
    """Token index of each ( [ { mapped to its closer and back."""
    pairs = {")": "(", "]": "[", "}": "{"}
    match: dict[int, int] = {}
    stack: list[int] = []
    for i, t in enumerate(toks):
        if t.kind != "p":
            continue
        if t.text in "([{":
            stack.append(i)
        elif t.text in pairs:
            # Pop up to the matching opener; a stray closer is ignored.
            for depth in range(len(stack) - 1, -1, -1):
                if toks[stack[depth]].text == pairs[t.text]:
                    opener = stack[depth]
                    del stack[depth:]
                    match[opener] = i
                    match[i] = opener
                    break
    return match


# ----------------------------------------------------------------------------------------------
# Per-file analysis.


@dataclass
class Ref:
    segments: list[str]  # as written, e.g. ["super", "routes", "JSON"]
    modpath: tuple[str, ...]  # module path of the code that wrote it (file + inline mods)
    line: int
    text: str


@dataclass
class FnInfo:
    name: str
    line: int
    end_line: int
    start_line: int  # first line of the item, attributes included


@dataclass
class SourceFile:
    rel: str  # "src/store.rs"
    modpath: tuple[str, ...] | None  # None for files that are not in the lib's module tree
    root_kind: str  # "lib", "bin" or "module"
    raw: str
    clean: str = ""
    lines: list[int] = field(default_factory=list)  # offsets of newlines
    toks: list[Tok] = field(default_factory=list)
    match: dict[int, int] = field(default_factory=dict)
    in_test: list[bool] = field(default_factory=list)
    whole_file_test: bool = False
    test_children: list[tuple[str, ...]] = field(default_factory=list)
    raw_lines: list[str] = field(default_factory=list)
    clean_lines: list[str] = field(default_factory=list)
    mod_decls: list[tuple[tuple[str, ...], int, str]] = field(default_factory=list)
    inline_mods: list[tuple[int, int, str]] = field(default_factory=list)
    refs: list[Ref] = field(default_factory=list)
    fns: list[FnInfo] = field(default_factory=list)

    def line_of(self, pos: int) -> int:
        return bisect.bisect_left(self.lines, pos) + 1

    def tok_line(self, i: int) -> int:
        return self.line_of(self.toks[i].pos)

    def is_p(self, i: int, text: str) -> bool:
        return 0 <= i < len(self.toks) and self.toks[i].kind == "p" and self.toks[i].text == text

    def is_id(self, i: int, text: str | None = None) -> bool:
        if not 0 <= i < len(self.toks) or self.toks[i].kind != "id":
            return False
        return text is None or self.toks[i].text == text


def module_path_of(rel_in_src: Path) -> tuple[str, ...] | None:
    parts = rel_in_src.parts
    if parts[0] == "bin" or rel_in_src.as_posix() in ("lib.rs", "main.rs"):
        return None if rel_in_src.as_posix() != "lib.rs" else ()
    if parts[-1] == "mod.rs":
        return tuple(parts[:-1])
    return tuple(parts[:-1]) + (parts[-1][: -len(".rs")],)


def analyze_file(sf: SourceFile, crate_name: str) -> None:
    sf.clean = sanitize(sf.raw)
    sf.lines = [m.start() for m in re.finditer("\n", sf.clean)]
    sf.raw_lines = sf.raw.split("\n")
    sf.clean_lines = sf.clean.split("\n")
    sf.toks = tokenize(sf.clean)
    sf.match = match_brackets(sf.toks)
    sf.in_test = [False] * len(sf.toks)
    find_test_items(sf)
    find_modules(sf)
    find_refs(sf, crate_name)
    find_fns(sf)


def skip_attributes(sf: SourceFile, k: int) -> int:
    """Index of the first token after any #[...] attributes starting at k."""
    while sf.is_p(k, "#") and sf.is_p(k + 1, "[") and k + 1 in sf.match:
        k = sf.match[k + 1] + 1
    return k


def skip_visibility(sf: SourceFile, k: int) -> int:
    if sf.is_id(k, "pub"):
        k += 1
        if sf.is_p(k, "(") and k in sf.match:
            k = sf.match[k] + 1
    return k


def item_end(sf: SourceFile, k: int) -> int:
    """Index of the last token of the item starting at k: its `;` or its body's closing brace."""
    while k < len(sf.toks):
        t = sf.toks[k]
        if t.kind == "p":
            if t.text in "([" and k in sf.match:
                k = sf.match[k] + 1
                continue
            if t.text == "{":
                return sf.match.get(k, len(sf.toks) - 1)
            if t.text in ";}":
                return k
        k += 1
    return len(sf.toks) - 1


def is_cfg_test_attr(sf: SourceFile, k: int) -> int | None:
    """If tokens at k are `#[cfg(test)]` or `#![cfg(test)]`, return the index of the `]`."""
    j = k + 1
    if sf.is_p(j, "!"):
        j += 1
    if (
        sf.is_p(k, "#")
        and sf.is_p(j, "[")
        and sf.is_id(j + 1, "cfg")
        and sf.is_p(j + 2, "(")
        and sf.is_id(j + 3, "test")
        and sf.is_p(j + 4, ")")
        and sf.is_p(j + 5, "]")
    ):
        return j + 5
    return None


def find_test_items(sf: SourceFile) -> None:
    k = 0
    while k < len(sf.toks):
        close = is_cfg_test_attr(sf, k)
        if close is None or sf.in_test[k]:
            k += 1
            continue
        if sf.is_p(k + 1, "!"):  # inner attribute: the enclosing module is test-only
            opener = enclosing_brace(sf, k)
            if opener is None:
                sf.whole_file_test = True
                sf.in_test = [True] * len(sf.toks)
                return
            start, end = opener, sf.match.get(opener, len(sf.toks) - 1)
        else:
            start = k
            end = item_end(sf, skip_visibility(sf, skip_attributes(sf, close + 1)))
        for j in range(start, end + 1):
            sf.in_test[j] = True
        k = end + 1


def enclosing_brace(sf: SourceFile, k: int) -> int | None:
    best = None
    for opener, closer in sf.match.items():
        if sf.toks[opener].text == "{" and opener < k < closer and (best is None or opener > best):
            best = opener
    return best


def modpath_at(sf: SourceFile, k: int) -> tuple[str, ...]:
    path = sf.modpath if sf.modpath is not None else ()
    for start, end, name in sf.inline_mods:  # sorted by start, so outer modules come first
        if start < k < end:
            path = path + (name,)
    return path


def find_modules(sf: SourceFile) -> None:
    for k, t in enumerate(sf.toks):
        if t.kind == "id" and t.text == "mod" and sf.is_id(k + 1) and sf.is_p(k + 2, "{") and not sf.in_test[k]:
            sf.inline_mods.append((k + 2, sf.match.get(k + 2, len(sf.toks) - 1), sf.toks[k + 1].text))
    sf.inline_mods.sort()
    for k, t in enumerate(sf.toks):
        if t.kind == "id" and t.text == "mod" and sf.is_id(k + 1) and sf.is_p(k + 2, ";"):
            child = modpath_at(sf, k) + (sf.toks[k + 1].text,)
            if sf.in_test[k]:  # `#[cfg(test)] mod x;`: x is test code
                sf.test_children.append(child)
            else:
                sf.mod_decls.append((child, sf.tok_line(k), "mod " + sf.toks[k + 1].text))


def find_refs(sf: SourceFile, crate_name: str) -> None:
    starts = {"crate", "super", "self"}
    if sf.root_kind == "bin":
        starts.add(crate_name)
    k = 0
    while k < len(sf.toks):
        t = sf.toks[k]
        if (
            t.kind == "id"
            and t.text in starts
            and sf.is_p(k + 1, "::")
            and not sf.in_test[k]
            and not sf.is_p(k - 1, "::")
            and not (sf.is_id(k - 1, "in") and sf.is_p(k - 2, "("))  # pub(in crate::x)
        ):
            modpath = modpath_at(sf, k)
            leaves: list[tuple[list[str], int]] = []
            k = parse_path(sf, k, [], leaves)
            for segments, at in leaves:
                sf.refs.append(Ref(segments, modpath, sf.tok_line(at), "::".join(segments)))
            continue
        k += 1


def parse_path(sf: SourceFile, k: int, prefix: list[str], leaves: list[tuple[list[str], int]]) -> int:
    """Parse a path or use tree at token k; append each leaf path. Returns the next token index."""
    segments = list(prefix)
    first = k
    while True:
        if sf.is_p(k, "{"):
            return parse_group(sf, k, segments, leaves)
        if sf.is_p(k, "*"):
            leaves.append((segments + ["*"], k))
            return k + 1
        if not sf.is_id(k):
            leaves.append((segments, first))
            return k
        if sf.toks[k].text == "self" and segments and not sf.is_p(k + 1, "::"):
            leaves.append((segments, k))  # `use a::{self}` names `a` itself
            return k + 1
        segments.append(sf.toks[k].text)
        if not sf.is_p(k + 1, "::"):
            leaves.append((segments, first))
            return k + 1
        k += 2


def parse_group(sf: SourceFile, k: int, prefix: list[str], leaves: list[tuple[list[str], int]]) -> int:
    end = sf.match.get(k, len(sf.toks) - 1)
    j = k + 1
    while j < end:
        if sf.is_p(j, ",") or sf.is_p(j, "::"):
            j += 1
            continue
        nxt = parse_path(sf, j, prefix, leaves)
        if sf.is_id(nxt, "as"):
            nxt += 2
        j = max(nxt, j + 1)
        while j < end and not sf.is_p(j, ","):  # anything unexpected: skip to the next tree
            j = sf.match[j] + 1 if j in sf.match and sf.match[j] > j else j + 1
    return end + 1


def find_fns(sf: SourceFile) -> None:
    for k, t in enumerate(sf.toks):
        if t.kind != "id" or t.text != "fn" or sf.in_test[k] or not sf.is_id(k + 1):
            continue
        j = k + 2
        body = None
        while j < len(sf.toks):
            u = sf.toks[j]
            if u.kind == "p":
                if u.text in "([" and j in sf.match:
                    j = sf.match[j] + 1
                    continue
                if u.text == "{":
                    body = j
                    break
                if u.text in ";}":
                    break
            j += 1
        if body is None or body not in sf.match:
            continue
        sf.fns.append(FnInfo(sf.toks[k + 1].text, sf.tok_line(k), sf.tok_line(sf.match[body]), item_start_line(sf, k)))


def item_start_line(sf: SourceFile, k: int) -> int:
    """Line where the item whose `fn` keyword is token k starts, attributes included."""
    j = k - 1
    while j >= 0:
        t = sf.toks[j]
        if t.kind == "id" and t.text in FN_QUALIFIERS or t.kind == "str" or sf.is_p(j, "::"):
            j -= 1
        elif sf.is_p(j, ")") and j in sf.match and sf.is_id(sf.match[j] - 1, "pub"):
            j = sf.match[j] - 1
        elif sf.is_p(j, "]") and j in sf.match and sf.is_p(sf.match[j] - 1, "#"):
            j = sf.match[j] - 2
        else:
            break
    return sf.tok_line(j + 1)


# ----------------------------------------------------------------------------------------------
# The crate: module map, edges, checks.


@dataclass
class Edge:
    lines: list[int]
    texts: list[str]


@dataclass
class Report:
    files: list[str]
    edges: dict[str, dict[str, Edge]]
    cycles: list[tuple[list[str], list[str]]]  # (members, closed walk)
    big_files: list[tuple[str, int]]
    long_fns: list[tuple[str, FnInfo, str]]  # (file, fn, note)
    allowed_fns: list[tuple[str, FnInfo, str]]  # (file, fn, reason)
    notes: list[str]

    def failed(self) -> bool:
        return bool(self.cycles or self.big_files or self.long_fns)


def crate_name_of(root: Path) -> str:
    try:
        manifest = tomllib.loads((root / "Cargo.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return root.name.replace("-", "_")
    name = manifest.get("lib", {}).get("name") or manifest.get("package", {}).get("name") or root.name
    return name.replace("-", "_")


def load_files(src: Path) -> list[SourceFile]:
    files = []
    for path in sorted(src.rglob("*.rs")):
        rel_in_src = path.relative_to(src)
        modpath = module_path_of(rel_in_src)
        if rel_in_src.as_posix() == "lib.rs":
            kind = "lib"
        elif modpath is None:
            kind = "bin"
        else:
            kind = "module"
        rel = (Path(src.name) / rel_in_src).as_posix()
        files.append(SourceFile(rel, modpath, kind, path.read_text(encoding="utf-8", errors="replace")))
    return files


def analyze(root: Path, file_lines_max: int, fn_lines_max: int, mod_edges: bool = True) -> Report:
    src = root / "src"
    crate_name = crate_name_of(root)
    files = load_files(src)
    notes: list[str] = []
    by_modpath: dict[tuple[str, ...], SourceFile] = {}
    for sf in files:
        analyze_file(sf, crate_name)
        if sf.modpath is None:
            continue
        if sf.modpath in by_modpath:
            notes.append(f"{sf.rel}:1: note: module {'::'.join(sf.modpath)} also at {by_modpath[sf.modpath].rel}")
            continue
        by_modpath[sf.modpath] = sf

    test_roots = [sf.modpath for sf in files if sf.whole_file_test and sf.modpath is not None]
    test_roots += [child for sf in files for child in sf.test_children]
    test_files = {
        sf.rel for sf in files if sf.modpath is not None and any(sf.modpath[: len(r)] == r for r in test_roots)
    }

    def resolve(sf: SourceFile, ref: Ref) -> SourceFile | None:
        first, rest = ref.segments[0], ref.segments
        if first in ("crate", "super", "self") and sf.root_kind == "bin":
            return sf  # a bin's own module tree: a leaf, nothing in the lib
        if first in ("super", "self"):
            base = ref.modpath
        else:  # `crate`, or the lib's name used from a bin
            base, rest = (), rest[1:]
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                if not base:
                    return None
                base = base[:-1]
            rest = rest[1:]
        full = base + tuple(s for s in rest if s != "*")
        for n in range(len(full), -1, -1):
            target = by_modpath.get(full[:n])
            if target is not None:
                return target
        return None

    edges: dict[str, dict[str, Edge]] = {sf.rel: {} for sf in files if sf.rel not in test_files}

    def add(frm: str, to: str, line: int, text: str) -> None:
        if frm == to or to in test_files:
            return
        edge = edges[frm].setdefault(to, Edge([], []))
        if line not in edge.lines:
            edge.lines.append(line)
            edge.texts.append(text)

    for sf in files:
        if sf.rel in test_files:
            continue
        for ref in sf.refs:
            target = resolve(sf, ref)
            if target is not None:
                add(sf.rel, target.rel, ref.line, ref.text)
        for child, line, text in sf.mod_decls:
            target = by_modpath.get(child)
            if target is None:
                notes.append(f"{sf.rel}:{line}: note: `{text};` has no file (#[path]?), not followed")
            elif mod_edges:
                add(sf.rel, target.rel, line, text)

    cycles = find_cycles(edges)
    big_files = []
    long_fns = []
    allowed_fns = []
    for sf in files:
        n_lines = sf.raw.count("\n") + (1 if sf.raw and not sf.raw.endswith("\n") else 0)
        if n_lines > file_lines_max:
            big_files.append((sf.rel, n_lines))
        if sf.rel in test_files:
            continue
        used_markers = set()
        for fn in sf.fns:
            marker_line, reason = allow_marker(sf, fn)
            if marker_line is not None:
                used_markers.add(marker_line)
            length = fn.end_line - fn.line + 1
            if length <= fn_lines_max:
                if marker_line is not None:
                    notes.append(f"{sf.rel}:{marker_line}: note: fn {fn.name} is {length} lines, its allow-long-fn can go")
                continue
            if marker_line is not None and reason:
                allowed_fns.append((sf.rel, fn, reason))
            else:
                note = " (its allow-long-fn gives no reason)" if marker_line is not None else ""
                long_fns.append((sf.rel, fn, note))
        for marker_line in all_markers(sf):
            if marker_line not in used_markers:
                notes.append(f"{sf.rel}:{marker_line}: note: allow-long-fn comment not directly above a fn")
    return Report([sf.rel for sf in files], edges, cycles, big_files, long_fns, allowed_fns, notes)


def is_comment_line(sf: SourceFile, line: int) -> bool:
    return sf.raw_lines[line - 1].lstrip().startswith("//") and not sf.clean_lines[line - 1].strip()


def all_markers(sf: SourceFile) -> list[int]:
    found = []
    starts = [t.pos for t in sf.toks]
    for number, text in enumerate(sf.raw_lines, start=1):
        if ALLOW_RE.match(text) and is_comment_line(sf, number):
            pos = sf.lines[number - 2] + 1 if number > 1 else 0
            k = bisect.bisect_left(starts, pos)
            if k < len(sf.toks) and sf.in_test[k] and (k == 0 or sf.in_test[k - 1]):
                continue
            found.append(number)
    return found


def allow_marker(sf: SourceFile, fn: FnInfo) -> tuple[int | None, str]:
    """The allow-long-fn comment for `fn`: in its attributes, or in the comment block above it."""
    candidates = list(range(fn.start_line, fn.line))
    line = fn.start_line - 1
    while line >= 1 and is_comment_line(sf, line):
        candidates.append(line)
        line -= 1
    for line in sorted(candidates):
        m = ALLOW_RE.match(sf.raw_lines[line - 1])
        if m and is_comment_line(sf, line):
            return line, m.group(1)
    return None, ""


def find_cycles(edges: dict[str, dict[str, Edge]]) -> list[tuple[list[str], list[str]]]:
    """Tarjan's strongly connected components (iterative); one closed walk for each of size > 1."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    sccs: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in edges:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                scc = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    scc.append(member)
                    if member == node:
                        break
                if len(scc) > 1:
                    sccs.append(sorted(scc))
    sccs.sort()
    return [(scc, closed_walk(scc, edges)) for scc in sccs]


def closed_walk(scc: list[str], edges: dict[str, dict[str, Edge]]) -> list[str]:
    members = set(scc)

    def shortest(frm: str, targets: set[str]) -> list[str]:
        prev: dict[str, str | None] = {frm: None}
        queue = deque([frm])
        while queue:
            node = queue.popleft()
            for nxt in sorted(edges[node]):
                if nxt not in members or nxt in prev:
                    continue
                prev[nxt] = node
                if nxt in targets:
                    path = [nxt]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])  # type: ignore[arg-type]
                    return path[::-1]
                queue.append(nxt)
        raise AssertionError("not strongly connected")

    start = scc[0]
    walk = [start]
    unvisited = members - {start}
    while unvisited:
        path = shortest(walk[-1], unvisited)
        walk += path[1:]
        unvisited -= set(path)
    return walk + shortest(walk[-1], {start})[1:]


# ----------------------------------------------------------------------------------------------
# Output.


def lines_text(lines: list[int]) -> str:
    return ",".join(str(x) for x in sorted(lines))


def render(report: Report, args: argparse.Namespace) -> list[str]:
    out = []
    if args.graph:
        out.append("dependency graph (file -> file it uses [lines]):")
        for frm in sorted(report.edges):
            targets = report.edges[frm]
            if not targets:
                out.append(f"{frm} -> (nothing)")
            for to in sorted(targets):
                out.append(f"{frm} -> {to} [{lines_text(targets[to].lines)}]")
        out.append("")
    for number, (members, walk) in enumerate(report.cycles, start=1):
        first = report.edges[walk[0]][walk[1]]
        out.append(
            f"{walk[0]}:{min(first.lines)}: import cycle {number} ({len(members)} files: "
            f"{', '.join(members)}): {' -> '.join(walk)}"
        )
        for frm, to in zip(walk, walk[1:]):
            edge = report.edges[frm][to]
            pairs = sorted(zip(edge.lines, edge.texts))
            shown = "; ".join(f"{line}: {text}" for line, text in pairs[:4])
            more = f"; and {len(pairs) - 4} more" if len(pairs) > 4 else ""
            out.append(f"{frm}:{lines_text(edge.lines)}: cycle {number} edge {frm} -> {to} ({shown}{more})")
        walked = set(zip(walk, walk[1:]))
        for frm in members:  # the other edges inside the component: cutting a cycle may need them too
            for to in sorted(report.edges[frm]):
                if to in members and (frm, to) not in walked:
                    edge = report.edges[frm][to]
                    first_text = sorted(zip(edge.lines, edge.texts))[0][1]
                    out.append(f"{frm}:{lines_text(edge.lines)}: cycle {number} also {frm} -> {to} ({first_text})")
    for rel, n_lines in report.big_files:
        out.append(f"{rel}:1: file is {n_lines} lines (limit {args.file_lines_max})")
    for rel, fn, note in sorted(report.long_fns, key=lambda x: (x[0], x[1].line)):
        length = fn.end_line - fn.line + 1
        out.append(f"{rel}:{fn.line}: fn {fn.name} is {length} lines (limit {args.fn_lines_max}){note}")
    for rel, fn, reason in sorted(report.allowed_fns, key=lambda x: (x[0], x[1].line)):
        length = fn.end_line - fn.line + 1
        out.append(f"{rel}:{fn.line}: allowed: fn {fn.name} is {length} lines (limit {args.fn_lines_max}): {reason}")
    out.extend(sorted(set(report.notes)))
    out.append(
        f"check-layers: {len(report.files)} files, {len(report.cycles)} cycles, "
        f"{len(report.big_files)} files over {args.file_lines_max} lines, "
        f"{len(report.long_fns)} functions over {args.fn_lines_max} lines ({len(report.allowed_fns)} allowed)"
    )
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graph", action="store_true", help="print the file dependency graph")
    parser.add_argument("--file-lines-max", type=int, default=FILE_LINES_MAX, metavar="N",
                        help=f"longest file allowed, in lines (default {FILE_LINES_MAX})")
    parser.add_argument("--fn-lines-max", type=int, default=FN_LINES_MAX, metavar="N",
                        help=f"longest fn allowed, fn line to closing brace (default {FN_LINES_MAX})")
    parser.add_argument("--no-mod-edges", action="store_true", help="do not count `mod child;` as an edge")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent, help="crate root holding src/ and Cargo.toml (default: this script's parent's parent)")
    parser.add_argument("--self-test", action="store_true", help="check this script against a fake tree")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.self_test:
        return self_test()
    if not (args.root / "src").is_dir():
        print(f"check-layers: no src/ under {args.root}", file=sys.stderr)
        return 2
    report = analyze(args.root, args.file_lines_max, args.fn_lines_max, mod_edges=not args.no_mod_edges)
    try:
        print("\n".join(render(report, args)))
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. piped into head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1 if report.failed() else 0


# ----------------------------------------------------------------------------------------------
# Self-test.

FAKE_TREE = {
    "Cargo.toml": '[package]\nname = "fake-app"\nversion = "0.1.0"\n',
    "src/lib.rs": "pub mod alpha;\npub mod beta;\npub mod gamma;\npub mod delta;\npub mod omega;\n",
    "src/main.rs": "use fake_app::alpha::A;\nuse crate::nothing;\nfn main() {}\n",
    # alpha <-> beta: a plain use one way, a multi-line grouped use the other way.
    "src/alpha.rs": (
        "use crate::beta::Thing;\n"  # 1
        "pub struct A;\n"
        "pub fn make() -> crate::delta::Top { crate::delta::Top }\n"  # 3
        'pub fn text() -> &\'static str { "crate::gamma::NOT_AN_EDGE" }\n'
    ),
    "src/beta.rs": (
        "pub struct Thing;\n"
        "use crate::{\n"
        "    gamma::{G1, G2 as Gee},\n"  # 3
        "    alpha::{self},\n"  # 4
        "};\n"
    ),
    # gamma: literals and comments that would confuse a naive scanner, a cfg(test) module that
    # imports beta (beta uses gamma, so counting it would be a cycle), long and allowed long fns.
    "src/gamma.rs": "\n".join(
        [
            "pub struct G1;",  # 1
            "pub struct G2;",
            "// crate::alpha::A in a comment is not an edge",
            "/* nested /* crate::delta::Top } */ still a comment { */",
            "pub fn tricky<'a>(x: &'a str) -> usize {",  # 5
            '    let s = "{ // not a comment } \\" }";',
            "    let c = '{'; let q = '\\''; let d = b'}';",
            '    let r = r#"}" crate::alpha "#; let r2 = br"{";',
            "    x.len() + s.len() + r.len() + r2.len() + (c as usize) + (q as usize) + (d as usize)",
            "}",  # 10
            "pub fn long_fn() {",  # 11
            *["    let _ = 1;" for _ in range(75)],
            "}",  # 87
            "// check-layers: allow-long-fn a lookup table reads better in one piece",  # 88
            "/// Documented.",
            "#[inline]",
            "#[allow(clippy::too_many_lines)]",
            "pub fn allowed_long_fn() {",  # 92
            *["    let _ = 2;" for _ in range(80)],
            "}",
            "#[cfg(test)]",
            "mod tests {",
            "    use super::*;",
            "    use crate::beta::Thing;",
            "    fn long_test() {",
            *["        let _ = 3;" for _ in range(80)],
            "    }",
            "}",
            "",
        ]
    ),
    # delta: super:: and self:: resolution, an inline module, pub(in ...) visibility, and a
    # cycle between two siblings (eps <-> zeta) under a mod.rs.
    "src/delta/mod.rs": "pub mod eps;\npub mod zeta;\npub struct Top;\n#[cfg(test)]\nmod tests;\n",
    "src/delta/tests.rs": "use crate::alpha::A;\nuse super::eps::E;\nfn long() {\n" + "    let _ = 0;\n" * 80 + "}\n",
    "src/delta/eps.rs": (
        "use super::zeta::Z;\n"  # 1 -> zeta
        "pub(in crate::delta) fn hidden() {}\n"
        "pub(crate) struct E;\n"
        "// check-layers: allow-long-fn\n"  # no reason given: not an exemption
        "fn no_reason() {\n"  # 5
        + "    let _ = 0;\n" * 70
        + "}\n"  # 76
        "#[cfg(test)]\n"
        "mod tests {\n"
        "    use super::super::Top;\n"  # the parent, from test code: not an edge
        "    use crate::delta::Top as T;\n"
        "}\n"
    ),
    "src/delta/zeta.rs": (
        "pub struct Z;\n"
        "mod inner {\n"
        "    use super::Z;\n"  # inner's super is zeta itself: not an edge
        "    use self::deeper::W;\n"
        "    mod deeper { pub struct W; }\n"
        "}\n"
        "pub fn e() -> crate::delta::eps::E { crate::delta::eps::E }\n"  # 7 -> eps
    ),
    "src/omega.rs": "".join(f"// line {n}\n" for n in range(1, 611)),
}


def self_test() -> int:
    failures = []

    def check(what: str, got: object, want: object) -> None:
        if got != want:
            failures.append(f"{what}: got {got!r}, want {want!r}")

    # The lexer alone.
    check("sanitize keeps length", len(sanitize("a /* b */ 'c' \"d\" r#\"e\"#")), 24)
    check("lifetime kept", sanitize("fn f<'a>(x: &'a u8)"), "fn f<'a>(x: &'a u8)")
    check("char brace blanked", sanitize("let c = '{';"), "let c = ' ';")
    check("string // blanked", sanitize('let s = "a // b"; x'), 'let s = "      "; x')

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for rel, text in FAKE_TREE.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        report = analyze(root, FILE_LINES_MAX, FN_LINES_MAX)
        e = report.edges

        def lines(frm: str, to: str) -> list[int] | None:
            edge = e.get(frm, {}).get(to)
            return sorted(edge.lines) if edge else None

        check("alpha -> beta", lines("src/alpha.rs", "src/beta.rs"), [1])
        check("alpha -> delta/mod.rs", lines("src/alpha.rs", "src/delta/mod.rs"), [3])
        check("beta -> gamma (grouped)", lines("src/beta.rs", "src/gamma.rs"), [3])
        check("beta -> alpha (grouped self)", lines("src/beta.rs", "src/alpha.rs"), [4])
        check("gamma uses nothing", sorted(e["src/gamma.rs"]), [])
        check("eps -> zeta", lines("src/delta/eps.rs", "src/delta/zeta.rs"), [1])
        check("eps: pub(in) is no edge", lines("src/delta/eps.rs", "src/delta/mod.rs"), None)
        check("zeta -> eps", lines("src/delta/zeta.rs", "src/delta/eps.rs"), [7])
        check("zeta: inline super is no edge", lines("src/delta/zeta.rs", "src/delta/mod.rs"), None)
        check("mod edge", lines("src/delta/mod.rs", "src/delta/eps.rs"), [1])
        check("cfg(test) mod file is no node", "src/delta/tests.rs" in e, False)
        check("cfg(test) mod decl is no edge", lines("src/delta/mod.rs", "src/delta/tests.rs"), None)
        check("main -> alpha", sorted(e["src/main.rs"]), ["src/alpha.rs"])
        check(
            "cycles",
            [members for members, _ in report.cycles],
            [["src/alpha.rs", "src/beta.rs"], ["src/delta/eps.rs", "src/delta/zeta.rs"]],
        )
        check("cycle walk", report.cycles[0][1], ["src/alpha.rs", "src/beta.rs", "src/alpha.rs"])
        check("big files", report.big_files, [("src/omega.rs", 610)])
        check(
            "long fns",
            sorted((rel, fn.name, fn.line, fn.end_line) for rel, fn, _ in report.long_fns),
            [("src/delta/eps.rs", "no_reason", 5, 76), ("src/gamma.rs", "long_fn", 11, 87)],
        )
        check(
            "allowed fns",
            [(rel, fn.name, reason) for rel, fn, reason in report.allowed_fns],
            [("src/gamma.rs", "allowed_long_fn", "a lookup table reads better in one piece")],
        )
        tricky = [fn for fn in analyze_gamma(root) if fn.name == "tricky"]
        check("tricky fn braces", [(fn.line, fn.end_line) for fn in tricky], [(5, 10)])
        check("exit status, dirty tree", quiet_main(["--root", tmp]), 1)

        for rel in ("src/beta.rs", "src/delta/zeta.rs", "src/omega.rs"):
            (root / rel).unlink()
        (root / "src/lib.rs").write_text("pub mod alpha;\npub mod gamma;\npub mod delta;\n")
        (root / "src/alpha.rs").write_text("use crate::gamma::G1;\nuse crate::delta::Top;\n")
        (root / "src/delta/mod.rs").write_text("pub mod eps;\npub struct Top;\n#[cfg(test)]\nmod tests;\n")
        (root / "src/delta/eps.rs").write_text("pub struct E;\n#[cfg(test)]\nmod tests {\n    use super::super::Top;\n}\n")
        gamma = FAKE_TREE["src/gamma.rs"].replace("pub fn long_fn() {", "// check-layers: allow-long-fn generated\nfn long_fn() {")
        (root / "src/gamma.rs").write_text(gamma)
        check("exit status, clean tree", quiet_main(["--root", tmp]), 0)

    for failure in failures:
        print(f"self-test FAILED: {failure}")
    print(f"check-layers self-test: {'FAILED' if failures else 'ok'} ({len(failures)} failures)")
    return 1 if failures else 0


def analyze_gamma(root: Path) -> list[FnInfo]:
    sf = SourceFile("src/gamma.rs", ("gamma",), "module", (root / "src/gamma.rs").read_text())
    analyze_file(sf, "fake_app")
    return sf.fns


def quiet_main(argv: list[str]) -> int:
    saved = sys.stdout
    sys.stdout = open(os.devnull, "w")
    try:
        return main(argv)
    finally:
        sys.stdout.close()
        sys.stdout = saved


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
