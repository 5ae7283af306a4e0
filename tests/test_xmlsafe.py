import pytest

from gateway.xmlsafe import UnsafeXML, parse_xml

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<lolz>&lol3;</lolz>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>"""


def test_plain_document():
    tree = parse_xml(b"<a xmlns='urn:x'><b>\xc3\xa9</b></a>")
    assert tree.getroot()[0].text == "\u00e9"


@pytest.mark.parametrize("doc", [BILLION_LAUGHS, XXE, b"<!DOCTYPE a><a/>"])
def test_dtd_and_entities_refused(doc):
    with pytest.raises(UnsafeXML, match="DOCTYPE|entity"):
        parse_xml(doc, what="test")


def test_not_well_formed_and_oversize():
    with pytest.raises(UnsafeXML, match="not well-formed"):
        parse_xml(b"<a><b></a>")
    with pytest.raises(UnsafeXML, match="over the limit"):
        parse_xml(b"<a>" + b"x" * 100 + b"</a>", max_bytes=50)
