"""The ISO skeleton's XSLT of a schematron, rewritten to give the same report for much less.

What the ANS compile chain writes (`iso_svrl_for_xslt2.xsl`) walks the whole document once per
pattern — every element through a `mode` whose template rules are the pattern's rules, plus a
second walk in the default mode inside each `svrl:active-pattern` — and reads its value sets
with `doc()` on every run. On a prescription (600 elements) that is IHE's 231 patterns walked
twice, 140 for ModelesDeContenusCDA; StrucMin's 25,000 asserts are 391 distinct ones, written
out again for every element they apply to (a 10 MB stylesheet, ~370 MB once Saxon-HE has
compiled it). Measured per prescription on the 2-core VM (`bench/bench_documents.py`), CPU:
IHE 65 -> 2 ms, ModelesDeContenusCDA 38 -> 2, Modeles_ANS 24 -> 1, StrucMin 54 -> 10; the four
compiled: ~830 -> ~400 MB resident.

The rewrites, each exact (the report's failed asserts and successful reports are the same, in
the same order; `tests/test_svrl_rewrite.py` compares both on official, generated and broken
documents):

1. **No default-mode walk.** `<svrl:active-pattern><xsl:apply-templates/>` walks the document
   in the default mode, where the skeleton's only templates are `/` and an empty `text()`: it
   writes nothing. It goes, with the `svrl:active-pattern` and `svrl:fired-rule` elements
   themselves (the gateway reads only failed asserts and successful reports).
2. **Each pattern visits what its rules match.** A pattern's mode visits every element and
   fires its highest-priority matching rule. Applying the mode's templates to exactly the
   elements some rule matches — `//P` for a pattern `P`, the XSLT definition of matching —
   fires the same rules on the same elements in the same (document) order; the others only
   met the empty fallback. Only for modes whose rules are plain (each ends with the walk's
   `xsl:apply-templates`, its contexts are paths ending on an element name test, no
   `current()`, `key()`, `id()`, `union`, comment...): anything else keeps its walk. The
   rules' contexts `*[cda:templateId/@root = 'X']` (most of IHE's and the CI-SIS ones) become
   one `xsl:key` lookup; absolute paths sharing their first step (all of StrucMin's start with
   `//hl7:ClinicalDocument[...]`) are evaluated under it once.
3. **Value sets read once per process.** `doc('literal')`, `document('literal')` and
   `document($v)` where `$v` is a global variable holding a literal become global parameters
   `mssgw-doc-N` whose default is that same `doc()`: `documents()` lists them, and the engine
   sets each to the document it parsed once (Saxon-HE has no document pool shared between
   transformations: it parsed ~160 KB of value sets per document). A kit's changed value set
   is then read by the next process, not the next document.
4. **Each distinct assert compiled once.** A rule's `xsl:choose`/`xsl:if` block that occurs in
   several rules becomes one named template that they call (the rule's local variables it
   reads passed as parameters; `xsl:call-template` keeps the context item, position, size and
   mode). StrucMin's 12,925 blocks become 239 templates: 10.6 -> 2.7 MB of XSLT.

Pure: XSLT bytes in, XSLT bytes out; the result is cached with the generated XSLT
(`schematron.Engine.compiled`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

from lxml import etree

# Part of the cache entry's name: this module's own digest, so that a changed rewrite never
# meets the output of the one before (nobody has to remember to bump a number).
VERSION = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
XSLNS = "http://www.w3.org/1999/XSL/Transform"
X = f"{{{XSLNS}}}"
SVRLNS = "http://purl.oclc.org/dsdl/svrl"
HL7 = "urn:hl7-org:v3"
KEY = "mssgw-templateId"
DOC_PARAM = "mssgw-doc-"
ASSERT_TEMPLATE = "mssgw-assert-"
_PATTERN_MODE = re.compile(r"M\d+")
# The walk each rule ends with, and the mode's fallback: `*`, or comments and PIs too (both
# variants of the skeleton; comments and PIs never match an element's rule either way).
_WALKS = ("*", "*|comment()|processing-instruction()")
_TEMPLATE_ID = re.compile(r"""\*\[(\w+):templateId/@root\s*=\s*(?:"([^"]*)"|'([^']*)')\]""")
_NAME_TEST = re.compile(r"(?:child::)?(?:\*|[\w.-]+:\*|\*:[\w.-]+|[\w.-]+(?::[\w.-]+)?)")
# What could make a pattern and its path differ: a focus or a node set of another kind...
_OTHER = re.compile(r"current\(|\(:|(?<![\w:.-])(?:key|id|document-node)\(|\s(?:union|intersect"
                    r"|except)\s")
# ... and anything that can raise a dynamic error, since a pattern whose evaluation fails does
# not match where the path fails the transformation: numbers compared or computed, casts.
_FAILING = re.compile(r"\s(?:div|mod|idiv|cast|castable|treat|instance)\s|(?<![\w.-])xs:"
                      r"|(?<![\w:.-])(?:sum|avg|min|max|abs|round|round-half-to-even|floor"
                      r"|ceiling)\(")
_NAME = re.compile(r"(?<![\w.-])[A-Za-z_][\w.-]*(?::(?:[A-Za-z_][\w.-]*|\*))?")
_NUMERIC = re.compile(r"[<>+-]|[=!]\s*[.\d]|\d\s*[=!]")
_DOC_CALL = re.compile(r"""(?<![\w:.-])(doc|document)\(\s*(?:'([^'{}$#]+)'|"([^"{}$#]+)")\s*\)""")
_DOC_VAR = re.compile(r"""(?<![\w:.-])document\(\s*\$([\w.-]+)\s*\)""")
_LITERAL = re.compile(r"""\s*(?:'([^']*)'|"([^"]*)")\s*""")


def rewrite(xslt: bytes) -> bytes:
    """The skeleton's XSLT `xslt`, rewritten (see the module's docstring). A stylesheet that
    is not the skeleton's shape comes back unchanged."""
    root = etree.fromstring(xslt, etree.XMLParser(resolve_entities=False, no_network=True,
                                                  huge_tree=True))
    main = _main_template(root)
    if main is None:
        return xslt
    _drop_default_walks(root, main)
    _select_rule_contexts(root, main)
    _preload_documents(root)
    _share_asserts(root)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def documents(xslt: str) -> dict[str, str]:
    """The value sets a rewritten stylesheet reads once: parameter name -> the URI its
    default `doc()` reads (relative to the stylesheet)."""
    found = re.finditer(rf"""<[\w.-]+:param name="({DOC_PARAM}\d+)" select="(?:doc|document)"""
                        r"""\('([^'&]*)'\)"/>""", xslt)
    return {m.group(1): m.group(2) for m in found}


# --- 1. the default-mode walks ----------------------------------------------------------------

def _main_template(root: etree._Element) -> etree._Element | None:
    mains = [t for t in root.iterchildren(f"{X}template")
             if t.get("match") == "/" and t.get("mode") is None]
    return mains[0] if len(mains) == 1 else None


def _drop_default_walks(root: etree._Element, main: etree._Element) -> None:
    default = {str(t.get("match")): t for t in root.iterchildren(f"{X}template")
               if t.get("mode") is None and t.get("name") is None}
    text = default.get("text()")
    if sorted(default) != ["/", "text()"] or text is None or len(text) or (text.text or "").strip():
        return  # the default mode writes something: keep its walks
    for active in list(main.iter(f"{{{SVRLNS}}}active-pattern")):
        _remove(active)
    for fired in list(root.iter(f"{{{SVRLNS}}}fired-rule")):
        _remove(fired)


def _remove(el: etree._Element) -> None:
    """Remove `el`, keeping the text that follows it."""
    parent = el.getparent()
    assert parent is not None
    if el.tail and el.tail.strip():
        prev = el.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + el.tail
        else:
            parent.text = (parent.text or "") + el.tail
    parent.remove(el)


# --- 2. each pattern visits what its rules match ----------------------------------------------

def _select_rule_contexts(root: etree._Element, main: etree._Element) -> None:
    by_mode: dict[str, list[etree._Element]] = {}
    for t in root.iterchildren(f"{X}template"):
        mode = t.get("mode")
        if mode:
            by_mode.setdefault(mode, []).append(t)
    hl7 = next((p for p, uri in root.nsmap.items() if uri == HL7 and p), None)
    keyed = False
    for walk in main.iter(f"{X}apply-templates"):
        mode = walk.get("mode")
        if walk.get("select") != "/" or not mode or not _PATTERN_MODE.fullmatch(mode):
            continue
        plan = _mode_plan(by_mode.get(mode, []), mode, hl7)
        if plan is None:
            continue
        rules, fallback, roots, paths = plan
        parts = []
        if roots:
            keyed = True
            parts.append(f"key('{KEY}', ({', '.join(_quote(r) for r in roots)}))")
        parts += _factorise(paths)
        walk.set("select", parts[0] if len(parts) == 1 else
                 "(" + " | ".join(parts) + ")" if parts else "()")
        for rule in rules:
            _remove(rule[-1])  # the walk into the children: they are selected or not visited
        for child in list(fallback):
            fallback.remove(child)
    if keyed:
        assert hl7 is not None
        key = etree.Element(f"{X}key", name=KEY, match="*", use=f"{hl7}:templateId/@root")
        main.addprevious(key)


def _mode_plan(templates: list[etree._Element], mode: str, hl7: str | None
               ) -> tuple[list[etree._Element], etree._Element, list[str], list[str]] | None:
    """The mode's rules, its fallback, the templateIds and the paths its rules match; None
    when the mode is not plain enough to be sure of the rewrite."""
    rules: list[etree._Element] = []
    fallback = None
    for t in templates:
        match, priority = t.get("match"), t.get("priority")
        if match == "text()" and priority == "-1" and len(t) == 0:
            continue
        if match == "@*|node()" and priority == "-2" and fallback is None:
            fallback = t
            continue
        last = t[-1] if len(t) else None
        if (match is None or t.get("name") is not None or last is None
                or last.tag != f"{X}apply-templates" or last.get("mode") != mode
                or last.get("select") not in _WALKS or len(last)):
            return None
        rules.append(t)
    if fallback is None or [c.tag for c in fallback] != [f"{X}apply-templates"] \
            or fallback[0].get("select") not in _WALKS:
        return None
    roots: list[str] = []
    paths: list[str] = []
    for t in rules:
        pattern = str(t.get("match"))
        branches = _split(pattern, "|")
        if branches is None:
            return None
        for branch in branches:
            m = _TEMPLATE_ID.fullmatch(branch)
            if m and hl7 is not None and t.nsmap.get(m.group(1)) == HL7:
                value = m.group(2) if m.group(2) is not None else m.group(3)
                if value not in roots:
                    roots.append(value)
                continue
            path = _as_path(branch)
            if path is None:
                return None
            paths.append(path)
    return rules, fallback, roots, paths


def _as_path(branch: str) -> str | None:
    """The expression selecting what the pattern branch matches, when it matches elements
    only: `//branch` (or the branch itself when rooted)."""
    bare = re.sub(r"'[^']*'|\"[^\"]*\"", "''", branch)
    if not branch or branch.startswith("(") or _OTHER.search(bare) or _FAILING.search(bare) \
            or _NUMERIC.search(_NAME.sub("n", bare)):
        return None
    steps = _steps(branch)
    if steps is None:
        return None
    last = steps[-1][1]
    head = _split(last, "[")
    if head is None or not _NAME_TEST.fullmatch(head[0].strip()):
        return None
    return branch if branch.startswith("/") else "//" + branch


def _factorise(paths: list[str]) -> list[str]:
    """`//A/x | //A/y` as `//A/(x | y)`: paths from the root that share their first step
    evaluate it once."""
    groups: dict[str, list[str]] = {}
    out: list[str | tuple[str]] = []
    for path in paths:
        steps = _steps(path)
        if steps and steps[0][0] == "//" and path.startswith("//"):
            first = steps[0][1]
            if first not in groups:
                groups[first] = []
                out.append((first,))
            rest = _join(steps[1:]) if len(steps) > 1 else "."
            if rest not in groups[first]:
                groups[first].append(rest)
        else:
            out.append(path)
    result = []
    for item in out:
        if isinstance(item, tuple):
            rests = groups[item[0]]
            result.append(f"//{item[0]}" + ("" if rests == ["."] else
                                            "/(" + " | ".join(rests) + ")"))
        else:
            result.append(item)
    return result


def _join(steps: list[tuple[str, str]]) -> str:
    """The steps after the first as a relative path (a leading `//` as the axis it means)."""
    sep, first = steps[0]
    head = ("descendant-or-self::node()/" if sep == "//" else "") + first
    return head + "".join(s + step for s, step in steps[1:])


def _steps(path: str) -> list[tuple[str, str]] | None:
    """The path's steps, each with the separator before it ('' for a relative path's first
    step, '/' or '//'); None when it is not a plain path ('/' alone, an empty step...)."""
    out: list[tuple[str, str]] = []
    sep = "//" if path.startswith("//") else "/" if path.startswith("/") else ""
    start = i = len(sep)
    depth = 0
    quote = ""
    while i < len(path):
        ch = path[i]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth < 0:
                return None
        elif ch == "/" and depth == 0:
            if i == start:
                return None
            out.append((sep, path[start:i]))
            sep = "//" if path.startswith("//", i) else "/"
            i += len(sep)
            start = i
            continue
        i += 1
    if quote or depth or start >= len(path):
        return None
    out.append((sep, path[start:]))
    return out


def _split(text: str, sep: str) -> list[str] | None:
    """`text` cut at each `sep` outside quotes, brackets and parentheses (for "[": at the
    first predicate only, giving [head, rest])."""
    parts = []
    depth = 0
    quote = ""
    start = 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif sep == "[" and ch == "[" and depth == 0:
            return [text[:i], text[i:]]
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    if quote or depth:
        return None
    parts.append(text[start:].strip())
    return parts


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# --- 3. value sets read once ------------------------------------------------------------------

def _preload_documents(root: etree._Element) -> None:
    if any(el.get("{http://www.w3.org/XML/1998/namespace}base") is not None
           for el in root.iter(etree.Element) if el is not root):
        return  # a second base URI: which document a relative URI names depends on where
    names = {str(v.get("name")) for v in root.iter(f"{X}variable", f"{X}param", f"{X}function")}
    if any(n.startswith(DOC_PARAM) for n in names):
        return
    global_literals = {}  # (a schema's let is a global param: the gateway never sets one)
    for v in root.iterchildren(f"{X}variable", f"{X}param"):
        m = _LITERAL.fullmatch(v.get("select") or "")
        if m and len(v) == 0:
            global_literals[str(v.get("name"))] = m.group(1) if m.group(1) is not None \
                else m.group(2)
    local = {str(v.get("name")) for v in root.iter(f"{X}variable", f"{X}param")
             if v.getparent() is not root}
    # The same function as the call it replaces: doc() and document() differ on a missing
    # file (an error; an empty sequence), which the default then still does.
    params: dict[tuple[str, str], str] = {}

    def param(function: str, uri: str) -> str:
        if (function, uri) not in params:
            params[function, uri] = f"{DOC_PARAM}{len(params) + 1}"
        return "$" + params[function, uri]

    def by_literal(m: re.Match[str]) -> str:
        return param(m.group(1), m.group(2) if m.group(2) is not None else m.group(3))

    def by_variable(m: re.Match[str]) -> str:
        name = m.group(1)
        uri = global_literals.get(name)
        if name in local or not uri or "'" in uri or "#" in uri:
            return m.group(0)
        return param("document", uri)

    for el in root.iter(etree.Element):
        if el.getparent() is root and el.tag in (f"{X}variable", f"{X}param"):
            continue
        for attr in ("test", "select", "match"):
            value = el.get(attr)
            if value and "doc" in value:
                new = _DOC_VAR.sub(by_variable, _DOC_CALL.sub(by_literal, value))
                if new != value:
                    el.set(attr, new)
    first = next(root.iterchildren(f"{X}template"), None)
    if first is None:
        return
    for (function, uri), name in params.items():
        first.addprevious(etree.Element(f"{X}param", name=name,
                                        select=f"{function}({_quote(uri)})"))


# --- 4. each distinct assert once -------------------------------------------------------------

_BLOCK_STOP = {f"{X}variable", f"{X}param", f"{X}next-match", f"{X}apply-imports"}


def _share_asserts(root: etree._Element) -> None:
    in_scope = dict(root.nsmap)
    names = {str(t.get("name")) for t in root.iter(f"{X}template") if t.get("name")}
    if any(n.startswith(ASSERT_TEMPLATE) for n in names):
        return
    blocks: dict[tuple[bytes, tuple[str, ...]], list[etree._Element]] = {}
    for rule in _rules(root):
        local = [str(v.get("name")) for v in rule.iter(f"{X}variable", f"{X}param")]
        if len(set(local)) != len(local):
            continue  # a name declared twice: which one a block reads depends on where it is
        for block in rule.iterchildren(f"{X}choose", f"{X}if"):
            if dict(block.nsmap) != in_scope or any(d.tag in _BLOCK_STOP for d in block.iter()):
                continue
            text = etree.tostring(block, with_tail=False)
            source = text.decode("utf-8")
            used = tuple(v for v in local
                         if re.search(r"\$" + re.escape(v) + r"(?![\w.-])", source))
            blocks.setdefault((text, used), []).append(block)
    n = 0
    for (text, used), found in blocks.items():
        if len(found) < 2:
            continue
        n += 1
        name = f"{ASSERT_TEMPLATE}{n}"
        template = etree.SubElement(root, f"{X}template", name=name)
        for v in used:
            etree.SubElement(template, f"{X}param", name=v)
        template.append(etree.fromstring(text))
        for block in found:
            call = etree.Element(f"{X}call-template", name=name)
            for v in used:
                etree.SubElement(call, f"{X}with-param", name=v, select=f"${v}")
            call.tail = block.tail
            parent = block.getparent()
            assert parent is not None
            parent.replace(block, call)


def _rules(root: etree._Element) -> Iterator[etree._Element]:
    for t in root.iterchildren(f"{X}template"):
        if t.get("match") and _PATTERN_MODE.fullmatch(t.get("mode") or ""):
            yield t
