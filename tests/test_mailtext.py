from email import message_from_bytes

from gateway.mailtext import part_text


def part(headers: str, body: bytes):
    return message_from_bytes(headers.encode() + b"\r\n\r\n" + body)


def test_declared_charset_is_used():
    p = part("Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit",
             "Chloé".encode("latin-1"))
    assert part_text(p) == "Chloé"


def test_unknown_charset_falls_back_to_utf8():
    p = part("Content-Type: text/plain; charset=x-no-such-charset", "Chloé".encode())
    assert part_text(p) == "Chloé"


def test_base64_and_broken_base64_never_raise():
    p = part("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64",
             b"Q2hsb8OpCg==")
    assert part_text(p) == "Chloé\n"
    broken = part("Content-Type: text/plain\r\nContent-Transfer-Encoding: base64", b"@@@!!!")
    assert isinstance(part_text(broken), str)


def test_multipart_container_has_no_text():
    p = part('Content-Type: multipart/mixed; boundary="b"', b"--b\r\n\r\nx\r\n--b--\r\n")
    assert part_text(p) is None
