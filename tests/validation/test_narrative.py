"""check_narrative: the R4 rules for Narrative.div (https://hl7.org/fhir/R4/narrative.html, txt-1 and txt-2)."""

from __future__ import annotations

import gc
import gzip
import time
from pathlib import Path

import pytest

from fhirlead import fhirjson
from fhirlead.errors import Issue
from fhirlead.validation.narrative import check_narrative

XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'
PATH = "Observation.text.div"
EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "r4-examples.ndjson.gz"


def div(inner: str, attributes: str = "") -> str:
    return f"<div {XHTML}{attributes}>{inner}</div>"


def problems(value: str) -> list[str]:
    return [issue.diagnostics for issue in check_narrative(value, PATH)]


def only_problem(value: str) -> str:
    found = problems(value)
    assert len(found) == 1, found
    return found[0]


# -- valid narratives


@pytest.mark.parametrize("value", [
    div("Plain text"),
    div("<p>An <i>example</i> with <b>xhtml</b> formatting.</p>"),
    div('<table class="grid"><thead><tr><th scope="col">Code</th><th>Value</th></tr></thead>'
        '<tbody><tr><td colspan="1" style="text-align: right; color: #333">8480-6</td><td>120 mmHg</td></tr>'
        '</tbody></table>'),
    div('<ul><li>one</li><li class="bold">two</li></ul><ol start="3" type="i"><li>three</li></ol>'
        "<dl><dt>term</dt><dd>definition</dd></dl>"),
    div('<p>Picture: <img src="#pic1" alt="scan"/></p>'),
    div('<img src="Binary/123" alt="scan"/>'),
    div('<img src="https://images.example.org/x.png" alt="external"/>'),
    div('<img src="data:image/png;base64,iVBORw0KGgo="/>'),
    div('<img src="data: image/png;base64,iVBORw0KGgo="/>'),  # as the R4 examples write it
    div("caf&#233; &#x2014; 5&#160;mg &amp; &lt;10&gt; &quot;x&quot; &apos;y&apos; and é itself"),
    div('<a name="top">anchor</a> <a href="Patient/example">link</a> <a href="http://hl7.org/fhir">spec</a> '
        '<a href="mailto:someone@example.org">mail</a> <a href="#top">back</a>'),
    div('<span style="background-image: url(tbl_bck1.png); font-weight: bold">styled</span>'),
    div("text<!-- a comment inside the div --><br/>more"),
    div("<![CDATA[ cdata text ]]>"),
    div("<pre>  preformatted\n  text</pre>", ' xml:lang="en" lang="en"'),
    div("&#160;"),  # txt-2 is XPath normalize-space, which strips XML whitespace only
    f"\n  <div {XHTML}>\n  text\n  </div>\n",
    "<h:div xmlns:h=\"http://www.w3.org/1999/xhtml\"><h:p>prefixed XHTML</h:p></h:div>",
])
def test_valid_narratives_pass(value: str) -> None:
    assert check_narrative(value, PATH) == []


def test_every_narrative_of_the_packed_r4_examples_passes_but_four_empty_generated_ones() -> None:
    failed = {}
    count = 0

    def walk(node: object, path: str, file: str) -> None:
        nonlocal count
        if isinstance(node, dict):
            text = node.get("text")
            if isinstance(text, dict) and isinstance(text.get("div"), str):
                count += 1
                issues = check_narrative(text["div"], f"{path}.text.div")
                if issues:
                    failed[file] = [issue.diagnostics for issue in issues]
            for key, value in node.items():
                walk(value, f"{path}.{key}", file)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}[{index}]", file)

    with gzip.open(EXAMPLES, "rb") as lines:
        for row in map(fhirjson.loads, lines):
            walk(row["resource"], row["resource"]["resourceType"], row["file"])
    assert count > 3000
    # The R4 publication generated '<div xmlns="...">\n    </div>' for four examples whose source has no
    # narrative: whitespace only, which txt-2 refuses.
    assert sorted(failed) == [
        "ActivityDefinition-blood-tubes-supply.json", "ActivityDefinition-heart-valve-replacement.json",
        "EventDefinition-example.json", "Questionnaire-zika-virus-exposure-assessment.json",
    ]
    assert all(messages == [messages[0]] and "(txt-2)" in messages[0] for messages in failed.values())


def test_issue_shape() -> None:
    [issue] = check_narrative(div("<script>alert(1)</script>text"), "Bundle.entry[2].resource.text.div")
    assert isinstance(issue, Issue)
    assert issue.severity == "error"
    assert issue.code == "invariant"
    assert issue.expression == ("Bundle.entry[2].resource.text.div",)
    assert issue.diagnostics.startswith("Narrative: <script> is not allowed in FHIR narrative (txt-1")


# -- elements


@pytest.mark.parametrize(("element", "reason"), [
    ("script", "scripts are active content"),
    ("iframe", "frames and iframes are not allowed"),
    ("frame", "frames and iframes are not allowed"),
    ("object", "objects, applets and embedded content are not allowed"),
    ("embed", "objects, applets and embedded content are not allowed"),
    ("applet", "objects, applets and embedded content are not allowed"),
    ("form", "forms are not allowed"),
    ("input", "forms are not allowed"),
    ("body", "no html, head or body"),
    ("head", "no html, head or body"),
    ("style", "no stylesheets inside the narrative"),
    ("link", "no base/link elements"),
    ("base", "no base/link elements"),
    ("font", "deprecated HTML 4 elements"),
    ("center", "deprecated HTML 4 elements"),
    ("u", "deprecated HTML 4 elements"),
    ("ins", "section 9.4"),
    ("video", "only the basic HTML 4 formatting elements"),
])
def test_refused_elements_are_named_with_the_reason(element: str, reason: str) -> None:
    message = only_problem(div(f"text <{element}>x</{element}>"))
    assert message.startswith(f"Narrative: <{element}> is not allowed in FHIR narrative (txt-1: ")
    assert reason in message
    assert "line 1, column 48" in message  # where the element starts


def test_script_nested_deep_is_found() -> None:
    message = only_problem(div("<table><tr><td><p><span><script>x()</script></span></p></td></tr></table>"))
    assert "<script>" in message


def test_element_names_are_case_sensitive() -> None:
    assert "write <p>" in only_problem(div("<P>text</P>"))


def test_elements_outside_the_xhtml_namespace_are_refused() -> None:
    found = problems(div('text<svg xmlns="http://www.w3.org/2000/svg"><script>x()</script></svg>'))
    assert len(found) == 2
    assert found[0].startswith("Narrative: <svg> (namespace http://www.w3.org/2000/svg) is not allowed")
    assert found[1].startswith("Narrative: <script> (namespace http://www.w3.org/2000/svg) is not allowed")


def test_an_allowed_element_in_a_wrong_namespace_is_only_a_warning() -> None:
    """As the published CMS eCQM Libraries write their tables: read as XHTML, nothing in it can run."""
    found = check_narrative(div('<table xmlns="null"><tbody xmlns="http://www.w3.org/1999/xhtml"><tr><td>x</td>'
                                "</tr></tbody></table>"), PATH)
    assert [(i.severity, i.code) for i in found] == [("warning", "invariant")]
    assert "<table> is in namespace null" in found[0].diagnostics


# -- attributes


@pytest.mark.parametrize("attribute", ["onclick", "onClick", "onload", "onmouseover"])
def test_event_attributes_are_refused(attribute: str) -> None:
    message = only_problem(div(f'<p {attribute}="steal()">text</p>'))
    assert f"the attribute {attribute} on <p> is not allowed" in message
    assert "event attributes such as onclick are active content" in message


def test_attributes_outside_the_list_are_refused() -> None:
    message = only_problem(div('<a href="http://example.org" target="_blank">text</a>'))
    assert "the attribute target on <a> is not allowed in FHIR narrative (txt-1" in message


def test_xlink_attributes_are_refused() -> None:
    value = div('<a xl:href="http://example.org">text</a>', ' xmlns:xl="http://www.w3.org/1999/xlink"')
    assert "the attribute xlink:href on <a> is not allowed" in only_problem(value)


@pytest.mark.parametrize("href", [
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "  javascript:alert(1)",
    "java&#9;script:alert(1)",  # browsers drop tabs and newlines from URLs
    "&#x6A;avascript:alert(1)",
    "vbscript:msgbox(1)",
])
def test_script_urls_are_refused(href: str) -> None:
    message = only_problem(div(f'<a href="{href}">text</a>'))
    assert "the href of <a> is a " in message
    assert "script: URL, which runs a script" in message


def test_script_urls_are_refused_in_every_url_attribute() -> None:
    found = problems(div('<img src="javascript:x()"/><blockquote cite="javascript:x()">q</blockquote>'
                         '<img src="#a" longdesc="vbscript:x"/>'))
    assert [message.split(" is a ")[0] for message in found] == [
        "Narrative: the src of <img>", "Narrative: the cite of <blockquote>", "Narrative: the longdesc of <img>"]


def test_data_urls_only_for_images() -> None:
    assert "allowed only as the src of an <img>" in only_problem(div('<a href="data:text/html,x">text</a>'))
    assert "data: URL of type text/html; it must hold an image" in only_problem(
        div('<img src="data:text/html;base64,PHNjcmlwdD4="/>'))


@pytest.mark.parametrize("style", [
    "width: expression(alert(1))",
    "background: url(javascript:alert(1))",
    "background: url(&quot;java\\73 cript:alert(1)&quot;)",  # CSS escape
    "width: expr/**/ession(alert(1))",  # CSS comment
    "-moz-binding: url(x.xml#xss)",
    "behavior: url(x.htc)",
])
def test_active_css_in_style_is_refused(style: str) -> None:
    message = only_problem(div(f'<span style="{style}">text</span>'))
    assert "the style attribute on <span> holds " in message
    assert "which runs code" in message


def test_issues_are_capped() -> None:
    assert len(problems(div("text" + "<script/>" * 500))) == 10


# -- structure


@pytest.mark.parametrize(("value", "expected"), [
    (div("<p>one<br></p>"), "not well-formed XML (mismatched tag): an element is closed by the wrong end tag"),
    (div("<p>one</p><p>two"), "not well-formed XML (mismatched tag)"),
    (div("fish & chips"), "a literal '&' or '<' in text must be written &amp; or &lt;"),
    ("", "the value is empty or cut short"),
    ("just text", "not plain text"),
    (div("x") + div("y"), "there is content after the closing </div>"),
    (f"<div {XHTML}><p", "not well-formed XML"),
    (div('<p class="a" class="b">x</p>'), "an attribute is given twice"),
])
def test_not_well_formed(value: str, expected: str) -> None:
    [issue] = check_narrative(value, PATH)
    assert issue.code == "structure"
    assert issue.diagnostics.startswith("Narrative: ")
    assert expected in issue.diagnostics


def test_html_entities_are_named_with_the_numeric_reference_to_use() -> None:
    message = only_problem(div("5&nbsp;mg"))
    assert message.startswith("Narrative: &nbsp; is not defined: FHIR narrative is XML, which has no HTML entities")
    assert "&#160;" in message
    assert "line 1, column 44" in message
    assert "&copy;" in only_problem(div("<!-- &hellip; in a comment is no entity -->\n<p>&copy; HL7</p>"))
    assert "&eacute;" in only_problem(div('<p title="caf&eacute;">x</p>'))


@pytest.mark.parametrize(("value", "expected"), [
    (f"<p {XHTML}>text</p>", "the root element must be <div>, not <p>"),
    ("<div>text</div>", 'must be <div> in the XHTML namespace (xmlns="http://www.w3.org/1999/xhtml"), '
                        "found <div> in no namespace"),
    ('<div xmlns="http://hl7.org/fhir">text</div>', "found <div> in namespace http://hl7.org/fhir"),
])
def test_root_must_be_an_xhtml_div(value: str, expected: str) -> None:
    [issue] = check_narrative(value, PATH)
    assert issue.code == "structure"
    assert expected in issue.diagnostics


def test_doctype_and_entity_declarations_are_refused_before_expansion() -> None:
    laughs = ('<!DOCTYPE div [<!ENTITY a "aaaaaaaaaa">'
              + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
              + f"]><div {XHTML}>&j;</div>")
    started = time.perf_counter()
    [issue] = check_narrative(laughs, PATH)
    assert time.perf_counter() - started < 0.05  # 10^10 characters had the entities been expanded
    assert issue.diagnostics.startswith("Narrative: a <!DOCTYPE> declaration is not allowed")
    [issue] = check_narrative(f'<!DOCTYPE div SYSTEM "file:///etc/passwd"><div {XHTML}>x</div>', PATH)
    assert "<!DOCTYPE>" in issue.diagnostics


def test_xml_declaration_processing_instructions_and_outer_comments_are_refused() -> None:
    assert "an XML declaration (<?xml ...?>) is not allowed" in only_problem(f'<?xml version="1.0"?>{div("x")}')
    assert "the processing instruction <?php ...?> is not allowed" in only_problem(div("x<?php echo 1 ?>"))
    assert "a comment before the <div> is not allowed" in only_problem(f"<!-- c -->{div('x')}")
    assert "a comment after the closing </div> is not allowed" in only_problem(f"{div('x')}<!-- c -->")


def test_unpaired_surrogate_is_refused() -> None:
    assert "unpaired surrogate" in only_problem(div("\ud800"))


def test_not_a_string() -> None:
    assert "must be a string" in only_problem(42)  # type: ignore[arg-type]


# -- txt-2


@pytest.mark.parametrize("value", [
    div(""),
    f"<div {XHTML}/>",
    div("   \n\t  "),
    div("<p> </p><table><tr><td>\n</td></tr></table>"),
    div('<img alt="no source"/>'),
    div("<!-- only a comment -->"),
])
def test_narrative_without_content_is_refused(value: str) -> None:
    [issue] = check_narrative(value, PATH)
    assert issue.code == "invariant"
    assert issue.diagnostics == ("Narrative: the div has no content: it needs some text that is not only "
                                 "whitespace, or an <img> with a src (txt-2)")


def test_an_image_alone_is_content() -> None:
    assert check_narrative(div('<p><img src="#pic1"/></p>'), PATH) == []


# -- speed


def test_checking_narratives_leaves_no_garbage_for_the_cycle_collector() -> None:
    """A write checks each resource's narrative; a reference cycle left per check (the parser holding the
    checker's handlers) was most of what `fhirlead load`'s garbage collector had to walk."""
    divs = ['<div xmlns="http://www.w3.org/1999/xhtml"><p>ok</p></div>',  # valid
            '<div xmlns="http://www.w3.org/1999/xhtml"><script>x</script></div>',  # refused element
            '<div xmlns="http://www.w3.org/1999/xhtml"><p>open</div>',  # not well-formed
            '<div xmlns="http://www.w3.org/1999/xhtml"> </div>']  # no content
    gc.collect()
    gc.disable()
    try:
        for _ in range(20):
            for div in divs:
                check_narrative(div, "Patient.text.div")
        assert gc.collect() == 0
    finally:
        gc.enable()
