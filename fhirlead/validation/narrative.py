"""The R4 rules for a `Narrative.div` value (the `xhtml` type): one public function, `check_narrative`.

What is checked, and the spec text each rule rests on:

- Well-formed XML, one root element `div` in the XHTML namespace ("The xhtml root element needs to be a
  <div> in the xhtml namespace", https://hl7.org/fhir/R4/json.html#complex; a prefixed `h:div` is that
  too). The JSON form "SHALL be encoded so that the characters between the first '>' and the last '<'
  delimiters is the content of the <div> element" and `"<?xml ...><div>text</div>"` is given as not
  legal (https://hl7.org/fhir/R4/narrative.html#Narrative): so no XML declaration, and no comment before
  or after the root `div` (whitespace around it is let through). Comments and CDATA inside are XML.
- txt-1, elements and attributes: "The narrative SHALL contain only the basic html formatting elements
  and attributes described in chapters 7-11 (except section 4 of chapter 9) and 15 of the HTML 4.0
  standard, <a> elements (either name or href), images and internally contained style attributes". The
  lists below are the ones of txt-1's own XPath in the R4 Narrative StructureDefinition (element names
  by local name, attribute names exactly). Every element must be in the XHTML namespace (the R4
  fhir-xhtml.xsd is a strict XHTML schema). `xml:lang` is accepted (the XSD's i18n attributes, and
  narrative.html asks for the language to be declared), and `xml:space` on `pre`; every other
  namespaced attribute (`xlink:href`, ...) is refused.
- No active content: "The XHTML content SHALL NOT contain a head, a body element, external stylesheet
  references, deprecated elements, scripts, forms, base/link/xlink, frames, iframes, objects or event
  related attributes (e.g. onClick). This is to ensure that the content of the narrative is contained
  within the resource and that there is no active content." (narrative.html#rules). The element and
  attribute lists already exclude all of those; on top of them, a URL in `href`, `src`, `cite` or
  `longdesc` must not be `javascript:` or `vbscript:` (browsers run those), a `data:` URL is accepted
  only as the `src` of an image with an `image/...` media type (narrative.html: essential images
  "SHOULD always be embedded as a data: url, in an attachment or a contained resource"; a `data:` page
  in a link can carry a script), and a `style` attribute must not hold CSS that runs code
  (`expression(`, `javascript:`/`vbscript:` URLs, `-moz-binding`, `behavior:`).
- External references are not refused: an image may point at a contained resource (`#pic1`), at a
  resource on a server (`Binary/123`) or at any URL; https://hl7.org/fhir/R4/security.html#narrative
  only notes that "the inclusion of an external reference to an image can allow the server that hosts
  the image to track when the resource is displayed. This may be a feature or a problem depending on the
  context", and that `url(...)` references in CSS are "outside the scope of schemas and reference
  implementations". Links (`<a href>`) may point anywhere but at script.
- txt-2: "The narrative SHALL have some non-whitespace content", per its XPath
  `descendant::text()[normalize-space(.)!=''] or descendant::h:img[@src]`: some text that is not only
  XML whitespace (space, tab, CR, LF; so a lone `&#160;` passes, as it does the XPath), or an `img` with
  a `src`.
- Entities: "the XHTML is contained in general XML so there is no support for HTML entities like &nbsp;
  or &copy; etc. Unicode characters SHALL be used instead. Unicode &#160; substitutes for &nbsp;"
  (narrative.html). So only XML's five (`&amp; &lt; &gt; &quot; &apos;`) and numeric character references
  are accepted; `&nbsp;` is reported with the numeric reference to use.
- No DTD: a `<!DOCTYPE` (and so any entity declaration, which can only live in one), a processing
  instruction or an XML declaration is refused. The stdlib expat parser is used directly: it never
  fetches external entities or DTDs by itself (no ExternalEntityRefHandler is set), parameter entities
  are never parsed, and the parse is stopped by the DOCTYPE start handler, which expat calls before it
  reads the internal subset (and so before any entity declaration); entity-expansion attacks (billion
  laughs, external entity reads) all need a DOCTYPE, so none is reachable (a billion-laughs value is
  refused in ~10 us). No third-party parser (defusedxml) is needed.

Not checked: the uniqueness of `id` attributes (its scope is the whole resource, contained resources
included), whether `#id` image references resolve to a contained resource, and the XSD's content models
(which element may sit in which: e.g. a `<p>` inside a `<p>`); txt-1 lists names only.

No error issue means valid; every issue is an error (`structure` for what is not a well-formed XHTML div,
`invariant` for txt-1/txt-2) but one: an element of the allowed list in another namespace than XHTML's
(published eCQM Libraries write `<table xmlns="null">`) is a warning: it is read as XHTML, nothing in it
can run, and refusing it would refuse the published measures.
"""

from __future__ import annotations

import re
from pyexpat import XML_PARAM_ENTITY_PARSING_NEVER, ExpatError, ParserCreate, errors

from fhirlead.errors import Issue

XHTML_NS = "http://www.w3.org/1999/xhtml"
XML_NS = "http://www.w3.org/XML/1998/namespace"
XLINK_NS = "http://www.w3.org/1999/xlink"

_SEP = " "  # expat's namespace separator: "uri local" (a space never occurs in a namespace URI or name)
_XHTML_PREFIX = XHTML_NS + _SEP
_XML_LANG = XML_NS + _SEP + "lang"
_XML_SPACE = XML_NS + _SEP + "space"

# txt-1's XPath in the R4 Narrative StructureDefinition, element local names.
ALLOWED_ELEMENTS = frozenset((
    "a", "abbr", "acronym", "b", "big", "blockquote", "br", "caption", "cite", "code", "col", "colgroup",
    "dd", "dfn", "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "li", "ol",
    "p", "pre", "q", "samp", "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th",
    "thead", "tr", "tt", "ul", "var",
))

# txt-1's XPath, attribute names.
ALLOWED_ATTRIBUTES = frozenset((
    "abbr", "accesskey", "align", "alt", "axis", "bgcolor", "border", "cellhalign", "cellpadding",
    "cellspacing", "cellvalign", "char", "charoff", "charset", "cite", "class", "colspan", "compact",
    "coords", "dir", "frame", "headers", "height", "href", "hreflang", "hspace", "id", "lang", "longdesc",
    "name", "nowrap", "rel", "rev", "rowspan", "rules", "scope", "shape", "span", "src", "start", "style",
    "summary", "tabindex", "title", "type", "valign", "value", "vspace", "width",
))

_URL_ATTRIBUTES = frozenset(("href", "src", "cite", "longdesc"))
_CHECKED_ATTRIBUTES = _URL_ATTRIBUTES | {"style"}  # the allowed attributes whose value is looked at
_PLAIN_ATTRIBUTES = ALLOWED_ATTRIBUTES - _CHECKED_ATTRIBUTES
_ALLOWED_TAGS = frozenset(_XHTML_PREFIX + name for name in ALLOWED_ELEMENTS)  # as expat names them

# Why a well-known element is refused, in the words of narrative.html#rules; anything else not in
# ALLOWED_ELEMENTS gets the generic reason.
_SCRIPTS = "scripts are active content"
_FRAGMENT = "a narrative is a fragment of a page: no html, head or body"
_FORMS = "forms are not allowed"
_FRAMES = "frames and iframes are not allowed"
_OBJECTS = "objects, applets and embedded content are not allowed"
_DEPRECATED = "deprecated HTML 4 elements are not allowed"
_REFUSED_BECAUSE = {
    "script": _SCRIPTS, "noscript": _SCRIPTS,
    "html": _FRAGMENT, "head": _FRAGMENT, "body": _FRAGMENT, "title": _FRAGMENT, "meta": _FRAGMENT,
    "style": "no stylesheets inside the narrative: use the style or class attribute",
    "link": "no base/link elements (external references)", "base": "no base/link elements (external references)",
    "form": _FORMS, "input": _FORMS, "button": _FORMS, "select": _FORMS, "option": _FORMS, "optgroup": _FORMS,
    "textarea": _FORMS, "label": _FORMS, "fieldset": _FORMS, "legend": _FORMS, "isindex": _FORMS,
    "frame": _FRAMES, "frameset": _FRAMES, "iframe": _FRAMES, "noframes": _FRAMES,
    "object": _OBJECTS, "applet": _OBJECTS, "embed": _OBJECTS, "param": _OBJECTS,
    "font": _DEPRECATED, "basefont": _DEPRECATED, "center": _DEPRECATED, "u": _DEPRECATED, "s": _DEPRECATED,
    "strike": _DEPRECATED, "dir": _DEPRECATED, "menu": _DEPRECATED,
    "ins": "document-change markup (HTML 4 section 9.4) is excluded",
    "del": "document-change markup (HTML 4 section 9.4) is excluded",
}
_NOT_BASIC = "only the basic HTML 4 formatting elements are allowed"

MAX_ISSUES = 10  # past this the narrative is plainly not FHIR narrative; more messages help nobody

_XML_WHITESPACE = " \t\r\n"
_C0_AND_SPACE = "".join(chr(code) for code in range(0x21))
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_SCRIPT_SCHEMES = frozenset(("javascript", "vbscript"))
_CSS_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{1,6}[ \t\r\n\f]?|.)", re.DOTALL)
_CSS_COMMENT = re.compile(r"/\*.*?(\*/|$)", re.DOTALL)
_CSS_SPACE = re.compile(r"[\s\x00]+")
_CSS_ACTIVE = {  # what runs code from CSS (old IE and Firefox), as found in the squeezed value: as shown
    "expression(": "an expression(...)", "javascript:": "a javascript: URL", "vbscript:": "a vbscript: URL",
    "-moz-binding": "a -moz-binding", "behavior:": "a behavior", "behaviour:": "a behavior",
}
_ENTITY = re.compile(r"&([A-Za-z_:][A-Za-z0-9_.:\-]*);")
_XML_ENTITIES = frozenset(("amp", "lt", "gt", "quot", "apos"))
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

_TAG_MISMATCH = errors.codes[errors.XML_ERROR_TAG_MISMATCH]
_UNDEFINED_ENTITY = errors.codes[errors.XML_ERROR_UNDEFINED_ENTITY]
_INVALID_TOKEN = errors.codes[errors.XML_ERROR_INVALID_TOKEN]
_NO_ELEMENTS = errors.codes[errors.XML_ERROR_NO_ELEMENTS]
_JUNK_AFTER = errors.codes[errors.XML_ERROR_JUNK_AFTER_DOC_ELEMENT]
_UNBOUND_PREFIX = errors.codes[errors.XML_ERROR_UNBOUND_PREFIX]
_DUPLICATE_ATTRIBUTE = errors.codes[errors.XML_ERROR_DUPLICATE_ATTRIBUTE]
_MISPLACED_PI = errors.codes[errors.XML_ERROR_MISPLACED_XML_PI]
_UNCLOSED_TOKEN = errors.codes[errors.XML_ERROR_UNCLOSED_TOKEN]
_SYNTAX = errors.codes[errors.XML_ERROR_SYNTAX]
_WELL_FORMED_HINTS = {
    _TAG_MISMATCH: "an element is closed by the wrong end tag or left open (in XML an empty element is "
                   "written <br/>, and every <p> and <li> needs its end tag)",
    _INVALID_TOKEN: "a character XML does not allow there (a literal '&' or '<' in text must be written "
                    "&amp; or &lt;, and attribute values need quotes)",
    _NO_ELEMENTS: "the value is empty or cut short: it must be one complete <div> element",
    _JUNK_AFTER: "there is content after the closing </div>: the narrative is exactly one <div> element",
    _UNBOUND_PREFIX: "a namespace prefix is used without being declared",
    _DUPLICATE_ATTRIBUTE: "an attribute is given twice on one element",
    _MISPLACED_PI: "an XML declaration (<?xml ...?>) is not allowed in a narrative",
    _UNCLOSED_TOKEN: "the value ends inside a tag: it must be one complete <div> element",
    _SYNTAX: f'the value must be one XHTML element, <div xmlns="{XHTML_NS}">...</div>, not plain text',
}


class _Stop(Exception):
    """Raised from a handler to end the parse (a fatal refusal, or enough issues)."""


class _Checker:
    __slots__ = ("content", "div", "issues", "parser", "path", "started")

    def __init__(self, div: str, path: str) -> None:
        self.div = div
        self.path = path
        self.issues: list[Issue] = []
        self.content = False  # txt-2 is met
        self.started = False  # the root element has been seen
        parser = ParserCreate(namespace_separator=_SEP)
        parser.ordered_attributes = True
        parser.buffer_text = True
        parser.SetParamEntityParsing(XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartElementHandler = self.start
        parser.CharacterDataHandler = self.text
        parser.CommentHandler = self.comment
        parser.StartDoctypeDeclHandler = self.doctype
        parser.EntityDeclHandler = self.entity_declaration
        parser.ProcessingInstructionHandler = self.processing_instruction
        parser.XmlDeclHandler = self.xml_declaration
        self.parser = parser

    # -- reporting

    def where(self) -> str:
        return f"line {self.parser.CurrentLineNumber}, column {self.parser.CurrentColumnNumber + 1}"

    def add(self, code: str, diagnostics: str, severity: str = "error") -> None:
        self.issues.append(Issue(code, "Narrative: " + diagnostics, severity, expression=(self.path,)))
        if len(self.issues) >= MAX_ISSUES:
            raise _Stop

    def refuse(self, diagnostics: str) -> None:
        self.add("structure", diagnostics)
        raise _Stop

    # -- expat handlers

    def start(self, tag: str, attributes: list[str]) -> None:
        # The hot path: one set look-up per element, and per attribute unless its value needs a look.
        if tag not in _ALLOWED_TAGS or not self.started:
            self.unusual_element(tag)
        if attributes:
            for index in range(0, len(attributes), 2):
                if attributes[index] not in _PLAIN_ATTRIBUTES:
                    self.check_attribute(tag.rpartition(_SEP)[2], attributes[index], attributes[index + 1])

    def unusual_element(self, tag: str) -> None:
        namespace, _, name = tag.rpartition(_SEP)
        if not self.started:
            self.started = True
            if namespace != XHTML_NS:
                found = f"<{name}> in namespace {namespace}" if namespace else f"<{name}> in no namespace"
                self.add("structure", f"the root element must be <div> in the XHTML namespace "
                                      f"(xmlns=\"{XHTML_NS}\"), found {found} ({self.where()})")
            elif name != "div":
                self.add("structure", f"the root element must be <div>, not <{name}> ({self.where()})")
        elif namespace != XHTML_NS and f"{XHTML_NS}{_SEP}{name}" in _ALLOWED_TAGS:
            # published content has this (the CMS eCQM Libraries' `<table xmlns="null">`): a harmless
            # element of the allowed list in a wrong namespace is a warning, not a reason to refuse
            where = f"namespace {namespace}" if namespace else "no namespace"
            self.add("invariant", f"<{name}> is in {where}, not the XHTML namespace (txt-1); read as XHTML "
                                  f"({self.where()})", severity="warning")
        elif namespace != XHTML_NS:
            where = f"namespace {namespace}" if namespace else "no namespace"
            self.add("invariant", f"<{name}> ({where}) is not allowed in FHIR narrative: every element "
                                  f"must be XHTML (txt-1) ({self.where()})")
        else:
            self.element_refused(name)

    def text(self, data: str) -> None:
        # (Unsetting the handler once txt-2 is met would be cheaper, but pyexpat flushes its text
        # buffer into the handler on every handler change, from inside this very call.)
        if not self.content and data.strip(_XML_WHITESPACE):
            self.content = True

    def comment(self, data: str) -> None:
        # A comment outside the root is the first or the last markup of the value: within the root it
        # would come after the root's start tag and before its end tag.
        if not self.started:
            place = "before the <div>"
        elif self.div.rstrip(_XML_WHITESPACE).endswith("-->"):
            place = "after the closing </div>"
        else:
            return
        self.add("structure", f"a comment {place} is not allowed: the value must start with <div and end "
                              f"with </div> ({self.where()})")

    def doctype(self, name: str, system_id: str | None, public_id: str | None, internal_subset: bool) -> None:
        self.refuse(f"a <!DOCTYPE> declaration is not allowed in FHIR narrative (DTDs and entity declarations "
                    f"are refused) ({self.where()})")

    def entity_declaration(self, *declaration: object) -> None:  # unreachable without a DOCTYPE; kept as a guard
        self.refuse(f"an <!ENTITY> declaration is not allowed in FHIR narrative ({self.where()})")

    def processing_instruction(self, target: str, data: str) -> None:
        self.refuse(f"the processing instruction <?{target} ...?> is not allowed in FHIR narrative ({self.where()})")

    def xml_declaration(self, version: str | None, encoding: str | None, standalone: int) -> None:
        self.refuse(f"an XML declaration (<?xml ...?>) is not allowed: the value must start with <div "
                    f"({self.where()})")

    # -- the rules

    def element_refused(self, name: str) -> None:
        lower = name.lower()
        if lower != name and lower in ALLOWED_ELEMENTS:
            reason = f"XHTML element names are lower case: write <{lower}>"
        else:
            reason = _REFUSED_BECAUSE.get(lower, _NOT_BASIC)
        self.add("invariant", f"<{name}> is not allowed in FHIR narrative (txt-1: {reason}) ({self.where()})")

    def check_attribute(self, element: str, name: str, value: str) -> None:
        if name in _URL_ATTRIBUTES:
            if name == "src" and element == "img":
                self.content = True  # txt-2: descendant::h:img[@src]
            self.check_url(element, name, value)
        elif name == "style":
            self.check_style(element, value)
        elif _SEP in name:
            self.namespaced_attribute(element, name)
        else:
            self.attribute_refused(element, name)

    def attribute_refused(self, element: str, name: str) -> None:
        lower = name.lower()
        if lower.startswith("on"):
            reason = "event attributes such as onclick are active content"
        elif lower != name and lower in ALLOWED_ATTRIBUTES:
            reason = f"XHTML attribute names are lower case: write {lower}"
        else:
            reason = "only the attributes of the basic HTML 4 formatting elements are allowed"
        self.add("invariant", f"the attribute {name} on <{element}> is not allowed in FHIR narrative "
                              f"(txt-1: {reason}) ({self.where()})")

    def namespaced_attribute(self, element: str, qualified: str) -> None:
        if qualified == _XML_LANG or (qualified == _XML_SPACE and element == "pre"):
            return
        namespace, _, name = qualified.rpartition(_SEP)
        if namespace == XLINK_NS:
            shown, reason = f"xlink:{name}", "no base/link/xlink references"
        elif namespace == XML_NS:
            shown, reason = f"xml:{name}", "only xml:lang (and xml:space on <pre>) are allowed"
        else:
            shown, reason = f"{{{namespace}}}{name}", "attributes from other namespaces are not allowed"
        self.add("invariant", f"the attribute {shown} on <{element}> is not allowed in FHIR narrative "
                              f"(txt-1: {reason}) ({self.where()})")

    def check_url(self, element: str, name: str, value: str) -> None:
        # The scheme as a browser reads it: leading controls and spaces dropped, tabs and newlines
        # removed anywhere (so "java&#9;script:" is still javascript:), case ignored.
        url = value.lstrip(_C0_AND_SPACE)
        if "\t" in url or "\n" in url or "\r" in url:
            url = url.replace("\t", "").replace("\n", "").replace("\r", "")
        match = _SCHEME.match(url)
        if match is None:
            return  # relative: "#pic1", "Binary/123", "../x"
        scheme = match.group(1).lower()
        if scheme in _SCRIPT_SCHEMES:
            self.add("invariant", f"the {name} of <{element}> is a {scheme}: URL, which runs a script; FHIR "
                                  f"narrative has no active content (txt-1) ({self.where()})")
        elif scheme == "data":
            media_type = url[match.end():].split(",", 1)[0].split(";", 1)[0].strip(_C0_AND_SPACE).lower()
            if name != "src" or element != "img":
                self.add("invariant", f"the {name} of <{element}> is a data: URL; in FHIR narrative a data: "
                                      f"URL is allowed only as the src of an <img> ({self.where()})")
            elif not media_type.startswith("image/"):
                shown = media_type or "text/plain"
                self.add("invariant", f"the src of <img> is a data: URL of type {shown}; it must hold an image "
                                      f"(image/...) ({self.where()})")

    def check_style(self, element: str, value: str) -> None:
        css = value
        if "\\" in css:
            css = _CSS_ESCAPE.sub(_css_unescape, css)
        if "/*" in css:
            css = _CSS_COMMENT.sub("", css)
        css = _CSS_SPACE.sub("", css).lower()
        for active, shown in _CSS_ACTIVE.items():
            if active in css:
                self.add("invariant", f"the style attribute on <{element}> holds {shown}, which runs code; FHIR "
                                      f"narrative has no active content (txt-1) ({self.where()})")
                return


def _css_unescape(match: re.Match[str]) -> str:
    escaped = match.group(1)
    if escaped[0] in "0123456789abcdefABCDEF":
        code = int(escaped.rstrip(), 16)
        return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"
    return escaped


def check_narrative(div: str, path: str) -> list[Issue]:
    """The problems of one `Narrative.div` value at FHIRPath `path` (e.g. `Observation.text.div`); [] when
    it is valid R4 narrative XHTML. See the module docstring for the rules and their sources."""
    if not isinstance(div, str):
        return [Issue("structure", "Narrative: div must be a string holding an XHTML <div> element",
                      expression=(path,))]
    checker = _Checker(div, path)
    try:
        return _parse(checker, div, path)
    finally:
        # the parser holds the checker's bound methods as its handlers: a reference cycle per narrative,
        # which only the cyclic garbage collector would free (10 objects a resource, most of a load's garbage)
        checker.parser = None


def _parse(checker: _Checker, div: str, path: str) -> list[Issue]:
    try:
        checker.parser.Parse(div, True)
    except _Stop:
        return checker.issues
    except ExpatError as error:
        checker.issues.append(Issue("structure", "Narrative: " + _not_well_formed(error, div), expression=(path,)))
        return checker.issues
    except UnicodeEncodeError:
        checker.issues.append(Issue("structure", "Narrative: the text holds an unpaired surrogate (\\ud800-"
                                    "\\udfff), which is not a character", expression=(path,)))
        return checker.issues
    if not checker.content:
        checker.issues.append(Issue("invariant", "Narrative: the div has no content: it needs some text that is "
                                    "not only whitespace, or an <img> with a src (txt-2)", expression=(path,)))
    return checker.issues


def _not_well_formed(error: ExpatError, div: str) -> str:
    where = f"line {error.lineno}, column {error.offset + 1}"
    if error.code == _UNDEFINED_ENTITY:
        # expat points at the '&' in text, at the start tag for one in an attribute value; lines are
        # counted as XML does, columns in characters.
        position = error.offset
        for line, line_break in enumerate(_LINE_BREAK.finditer(div), 2):
            if line > error.lineno:
                break
            position = line_break.end() + error.offset
        for match in _ENTITY.finditer(div, position):
            if match.group(1) not in _XML_ENTITIES:
                return (f"&{match.group(1)}; is not defined: FHIR narrative is XML, which has no HTML entities; "
                        f"write the character itself or a numeric character reference (&nbsp; is &#160;) ({where})")
    hint = _WELL_FORMED_HINTS.get(error.code)
    message = errors.messages.get(error.code, "error")
    if message.startswith("not well-formed ("):  # "not well-formed (invalid token)"
        message = message[len("not well-formed ("):].rstrip(")")
    return f"not well-formed XML ({message})" + (f": {hint}" if hint else "") + f" ({where})"
