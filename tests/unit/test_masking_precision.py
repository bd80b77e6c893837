"""Precision of the SSN, IBAN, email and secrets detectors: ordinary data that looks a little like
what they look for (phone numbers, decimals, file names, SQL text, paths, literals) comes back
as the very same object, and the real thing is still masked wherever it is written."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.provisional import get_top_level_domains

from gateway.masking import Detector, Masker, builtin_detectors
from gateway.masking.detectors import (
    EmailDetector,
    IbanDetector,
    SecretsDetector,
    UsSsnDetector,
    iban_ok,
)

MASKER = Masker(builtin_detectors())


def only(detector: Detector) -> Masker:
    return Masker([detector])


# --- SSN ---------------------------------------------------------------------------------------

SSN_MASKED = [
    ("123-45-6789", "***-**-6789"),
    ("SSN 001-01-0001", "SSN ***-**-0001"),
    ("665-99-9999", "***-**-9999"),
    ("899-01-0001", "***-**-0001"),  # areas 773-899 are issued since 2011
    ("ssn: 123-45-6789.", "ssn: ***-**-6789."),  # a full stop is no decimal point
    ('{"ssn": "123-45-6789"}', '{"ssn": "***-**-6789"}'),
    ("1,123-45-6789,x", "1,***-**-6789,x"),  # CSV
    ("(123-45-6789)", "(***-**-6789)"),
    ("ssn=123-45-6789&", "ssn=***-**-6789&"),
]

# Never issued: every exclusion, at its edges.
SSN_NEVER_ISSUED = [
    "000-12-3456",
    "666-12-3456",
    "900-12-3456",
    "950-12-3456",
    "999-12-3456",
    "123-00-4567",
    "123-45-0000",
    "000-00-0000",
]

SSN_NOT_AN_SSN = [
    "0123-45-6789",  # inside longer digit runs
    "123-45-67890",
    "1123-45-6789",
    "1-123-45-6789",  # inside a longer dashed number
    "123-45-6789-0",
    "2024-123-45-6789",
    "3.123-45-6789",  # glued to a decimal number
    "123-45-6789.25",
    "+123-45-6789",  # an international phone number
    "+1 555-123-4567",
    "555-123-4567",  # phone shapes
    "(555) 123-4567",
    "2024-01-15",  # dates
    "15-01-2024",
    "2024-01-15 12:30:45",
    "123 45 6789",  # only the dashed form is an SSN (documented)
    "123456789",
]


@pytest.mark.parametrize(("text", "expected"), SSN_MASKED)
def test_ssn_masked(text: str, expected: str) -> None:
    assert only(UsSsnDetector()).mask_text(text) == expected


@pytest.mark.parametrize("text", SSN_NEVER_ISSUED + SSN_NOT_AN_SSN)
def test_ssn_shaped_but_not_an_ssn_untouched(text: str) -> None:
    assert MASKER.mask_text(text) is text


# --- IBAN --------------------------------------------------------------------------------------

IBANS = [
    "GB82WEST12345698765432",
    "DE89370400440532013000",
    "FR1420041010050500013M02606",
    "NL91ABNA0417164300",
    "BE68539007547034",
    "CH9300762011623852957",
    "ES9121000418450200051332",
    "IT60X0542811101000000123456",
    "NO9386011117947",
    "PL61109010140000071219812874",
    "MT84MALT011000012345MTLCAST001S",
    "SE4550000000058398257466",
]


@pytest.mark.parametrize("iban", IBANS)
def test_iban_masked_compact_printed_and_embedded(iban: str) -> None:
    printed = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    expected = f"{iban[:2]}****{iban[-4:]}"
    detector = only(IbanDetector())
    assert detector.mask_text(iban) == expected
    assert detector.mask_text(printed) == expected
    assert detector.mask_text(iban.lower()) == expected
    assert detector.mask_text(f'{{"iban": "{iban}"}}') == f'{{"iban": "{expected}"}}'
    assert detector.mask_text(f"pay?iban={iban}&x=1") == f"pay?iban={expected}&x=1"


def with_check_digits(iban: str, check: str) -> str:
    return iban[:2] + check + iban[4:]


def test_iban_check_digits_00_01_99_never_valid() -> None:
    # ISO 7064 check digits are 98 - (n mod 97): 02..98. A remainder of 1 with 00, 01 or 99 is
    # possible arithmetic, never an IBAN. Find such numbers and make sure they are refused.
    base = "GB00WEST12345698765"
    refused = 0
    for tail in range(1000):
        for check in ("00", "01", "99"):
            candidate = with_check_digits(f"{base}{tail:03d}", check)
            rearranged = candidate[4:] + candidate[:4]
            numeric = "".join(str(int(c, 36)) for c in rearranged)
            if int(numeric) % 97 == 1:
                assert not iban_ok(candidate)
                assert MASKER.mask_text(candidate) is candidate
                refused += 1
    assert refused > 0


IBAN_NOT_AN_IBAN = [
    "GB82WEST12345698765433",  # checksum
    "GB82WEST1234569876543",  # length for GB
    "QQ82WEST12345698765432",  # no such country
    "XGB82WEST12345698765432",  # inside a longer word
    "DE89370400440532013000X",
    "AT611904300234573202",  # right length for AT, wrong checksum
    "ISO8601",  # ordinary words and codes with the aa00 shape
    "AB12 release",
    "SKU DE12ABC3456",
    "v2.1 AT12",
]


@pytest.mark.parametrize("text", IBAN_NOT_AN_IBAN)
def test_iban_shaped_but_not_an_iban_untouched(text: str) -> None:
    assert MASKER.mask_text(text) is text


# --- email -------------------------------------------------------------------------------------

EMAIL_MASKED = [
    ("bob@example.com", "b***@example.com"),
    ("mailto:bob@example.com?subject=x", "mailto:b***@example.com?subject=x"),
    ("email=bob%40example.com&next=1", "email=b***%40example.com&next=1"),  # percent-encoded
    ("/users/bob%40Example.COM/profile", "/users/b***%40Example.COM/profile"),
    ("bob@example.com.png", "b***@example.com.png"),  # a file named after an address
    ("LIKE '%bob@example.com'", "LIKE '%***@example.com'"),
    ('{"to": ["a@x.io", "b@y.dev"]}', '{"to": ["a***@x.io", "b***@y.dev"]}'),
    ("git log: Bob <bob@users.noreply.github.com>", "git log: Bob <b***@users.noreply.github.com>"),
]

EMAIL_NOT_AN_ADDRESS = [
    "icon@2x.png",  # image variants
    "logo@3x.webp",
    "/static/img/hero@2x.jpg",
    "backup@2024.tar",
    "photo@home.jpg",
    "report@final.pdf",
    "LIKE '%@example.com'",  # no local part
    "'u'@'localhost'",  # MySQL account names
    "root@localhost",
    "lodash@4.17.21",  # package versions
    "@types/node@20.11.5",
    "react@^18.2.0",
    "python@3.11",
    "image@sha256:e3b0c44298fc1c149afbf4c8996fb924",
    "java.lang.Object@5e2de80c",
    "SELECT @@version",
    "@decorator.attr",
    "100%40",
    "a%40b",
]


@pytest.mark.parametrize(("text", "expected"), EMAIL_MASKED)
def test_email_masked(text: str, expected: str) -> None:
    assert only(EmailDetector()).mask_text(text) == expected


@pytest.mark.parametrize("text", EMAIL_NOT_AN_ADDRESS)
def test_email_shaped_but_not_an_address_untouched(text: str) -> None:
    assert MASKER.mask_text(text) is text


def test_file_extensions_taken_for_file_names_are_no_real_tld() -> None:
    # Skipping "x@y.png" can never hide an address only while no extension is a TLD: check them
    # against the IANA list (the copy hypothesis ships, so nothing is downloaded).
    from gateway.masking.detectors import _FILE_EXTENSIONS

    tlds = {tld.lower() for tld in get_top_level_domains()}
    assert len(tlds) > 1000
    assert sorted(_FILE_EXTENSIONS & tlds) == []


@given(
    local=st.from_regex(r"[a-z][a-z0-9._+-]{0,20}", fullmatch=True),
    tld=st.sampled_from(["com", "org", "net", "io", "de", "co.uk", "xn--p1ai", "dev", "app"]),
    encoded=st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_real_addresses_never_leak(local: str, tld: str, encoded: bool) -> None:
    at = "%40" if encoded else "@"
    text = f"to: {local}{at}example.{tld}, bye"
    masked = only(EmailDetector()).mask_text(text)
    assert masked == f"to: {local[0]}***{at}example.{tld}, bye"


def test_percent_encoded_chain_is_linear() -> None:
    # "%40" is made of local-part characters: walking back must stop at the previous address.
    text = "a%40b.com" + "%40b.com" * 200_000
    assert isinstance(MASKER.mask_text(text), str)


# --- secrets -----------------------------------------------------------------------------------

GOOGLE = "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"  # AIza + 35
NPM = "npm_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"  # npm_ + 36
GITLAB = "glpat-" + "xYz123AbC456dEf789Gh"
ANTHROPIC = "sk-ant-api03-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0"
OPENAI = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0"
OPENAI_OLD = "sk-" + "A1b2C3d4E5f6G7h8I9j0" + "T3BlbkFJ" + "K1l2M3n4O5p6Q7r8S9t0"

SECRETS_MASKED = [
    (f"maps?key={GOOGLE}&q=x", "maps?key=<secret:google_api_key>&q=x"),
    (f"maps {GOOGLE} loaded", "maps <secret:google_api_key> loaded"),
    (f"NPM_TOKEN {NPM}", "NPM_TOKEN <secret:npm_token>"),
    (
        f"git clone https://oauth2:{GITLAB}@gitlab.com/x.git",
        "git clone https://oauth2:<secret:gitlab_token>@gitlab.com/x.git",
    ),
    (f"remote uses {GITLAB}", "remote uses <secret:gitlab_token>"),
    (f"claude {ANTHROPIC}", "claude <secret:anthropic_key>"),
    (f"openai {OPENAI}", "openai <secret:openai_key>"),
    (f"openai {OPENAI_OLD}", "openai <secret:openai_key>"),
    ("app token xapp-1-A0123456789-0123456789012-abcdef", "app token <secret:slack_token>"),
    ("refresh xoxe-1-My0xLTEwMjM0NTY3ODkw", "refresh <secret:slack_token>"),
    # SQL's own password syntax
    ("ALTER ROLE bob WITH PASSWORD 'hunter2'", "ALTER ROLE bob WITH PASSWORD '****'"),
    (
        "CREATE ROLE app LOGIN ENCRYPTED PASSWORD 'md5abc'",
        "CREATE ROLE app LOGIN ENCRYPTED PASSWORD '****'",
    ),
    ("alter user bob password 'it''s'", "alter user bob password '****'"),
    ("ALTER USER bob PASSWORD\n  'x y z'", "ALTER USER bob PASSWORD\n  '****'"),
    ("CREATE USER 'u'@'%' IDENTIFIED BY 'pw'", "CREATE USER 'u'@'%' IDENTIFIED BY '****'"),
    (
        "CREATE USER u IDENTIFIED WITH caching_sha2_password BY 'pw'",
        "CREATE USER u IDENTIFIED WITH caching_sha2_password BY '****'",
    ),
    ("OPTIONS (user 'app', password 'secret')", "OPTIONS (user 'app', password '****')"),
    (
        "ALTER ROLE bob PASSWORD 'cut off by track_activity_query_si",
        "ALTER ROLE bob PASSWORD '****",
    ),
    # literals and placeholders do not hide real values next to them
    ('{"token": "abc", "enabled": true}', '{"token": "****", "enabled": true}'),
    ("password=hunter2 debug=false", "password=**** debug=false"),
]

SECRETS_NOT_A_SECRET = [
    # literals
    "secret: false",
    "is_secret: true",
    "token: null",
    "{'api_key': None}",
    '{"password": null}',
    "PASSWORD=None",
    # SQL bind placeholders
    "SELECT * FROM users WHERE password = $1",
    "UPDATE users SET password = $2 WHERE id = $1",
    "WHERE token = ?",
    "WHERE api_key = %s",
    "WHERE password = %(password)s",
    "WHERE password = :password",
    # paths
    "-v /run/secrets/db_password:/etc/pw:ro",
    "POST /oauth/token:revoke",
    "C:\\secrets\\token:1",
    # SQL text that is not the PASSWORD syntax
    "SET password_encryption = 'scram-sha-256'",
    "SELECT 'password' AS word",
    "SELECT password FROM users ORDER BY 'x'",
    "ALTER ROLE bob PASSWORD NULL",
    "-- the old_password 'x' column",
    "and 'quoted' prose, or by 'someone'",
    # prefixes without a token body
    "sk-ant-short",
    "glpat-short",
    "AIzaShort",
    "npm_install",
    "xapp-",
    "task-123 disk-2 risk-free",
    "version v1.2.3 released",
]


@pytest.mark.parametrize(("text", "expected"), SECRETS_MASKED)
def test_secret_masked(text: str, expected: str) -> None:
    assert only(SecretsDetector()).mask_text(text) == expected


@pytest.mark.parametrize("text", SECRETS_NOT_A_SECRET)
def test_secret_shaped_but_not_a_secret_untouched(text: str) -> None:
    assert MASKER.mask_text(text) is text


@pytest.mark.parametrize(
    "value",
    [
        "PASSWORD '" * 100_000,
        "IDENTIFIED BY '" * 60_000,
        "d '" * 300_000,
        "'" * 1_000_000,
        "PASSWORD '" + "''" * 500_000,
        "sk-" * 300_000,
        "glpat-" * 150_000,
        "npm_" * 250_000,
    ],
)
def test_secret_trigger_soup_completes(value: str) -> None:
    # Each of these would be quadratic if a scan restarted from every trigger.
    assert isinstance(MASKER.mask_text(value), str)
