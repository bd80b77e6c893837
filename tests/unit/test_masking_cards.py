"""The card detector's precision: every published test card of every network is masked wherever
it is written, and ordinary numbers (zeros, fractions, ids, timestamps, phone numbers, barcodes,
hashes, numbers in scientific notation) never are, so a COPY round trip or a read-modify-write
never stores a masked value in place of a real one."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from gateway.masking import Masker, builtin_detectors
from gateway.masking.cards import CARD_NETWORKS, CreditCardDetector, card_network, luhn_ok

MASKER = Masker(builtin_detectors())
CARDS = Masker([CreditCardDetector()])
DOCS = Path(__file__).resolve().parents[2] / "docs" / "masking.md"


def luhn_complete(body: str) -> str:
    """``body`` plus its Luhn check digit (independent of the implementation under test)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def masked(number: str) -> str:
    return f"****-****-****-{number[-4:]}"


# --- true positives ----------------------------------------------------------------------------

# Test numbers published by payment providers for their sandboxes (Stripe, Adyen, Braintree,
# PayPal, Worldpay and others), with the network each is issued under.
PUBLISHED_TEST_CARDS = [
    ("4111111111111111", "Visa"),
    ("4242424242424242", "Visa"),
    ("4012888888881881", "Visa"),
    ("4000056655665556", "Visa"),
    ("4005519200000004", "Visa"),
    ("4009348888881881", "Visa"),
    ("4012000033330026", "Visa"),
    ("4012000077777777", "Visa"),
    ("4217651111111119", "Visa"),
    ("4500600000000061", "Visa"),
    ("4000000000000002", "Visa"),
    ("4000002500001001", "Visa"),  # Cartes Bancaires co-brand
    ("4444333322221111", "Visa"),
    ("4917610000000000", "Visa"),  # Visa Electron
    ("4151500000000008", "Visa"),
    ("4222222222222", "Visa"),  # 13 digits
    ("4007000000027", "Visa"),  # 13 digits
    ("4917610000000000003", "Visa"),  # 19 digits
    ("5555555555554444", "Mastercard"),
    ("5200828282828210", "Mastercard"),
    ("5105105105105100", "Mastercard"),
    ("5454545454545454", "Mastercard"),
    ("5413330089099999", "Mastercard"),
    ("5100060000000002", "Mastercard"),
    ("5500000000000004", "Mastercard"),
    ("2223003122003222", "Mastercard"),  # 2-series
    ("2223000048400011", "Mastercard"),
    ("2222400070000005", "Mastercard"),
    ("2308880000000000", "Mastercard"),
    ("2720992720992729", "Mastercard"),
    ("378282246310005", "American Express"),
    ("371449635398431", "American Express"),
    ("378734493671000", "American Express"),
    ("340000000000009", "American Express"),
    ("6011111111111117", "Discover"),
    ("6011000990139424", "Discover"),
    ("6011981111111113", "Discover"),
    ("6011601160116611", "Discover"),
    ("6011000000000004", "Discover"),
    ("6445644564456445", "Discover"),
    ("6555900000604105", "Discover"),
    ("3056930009020004", "Diners Club"),  # 16 digits
    ("36227206271667", "Diners Club"),  # 14 digits
    ("30569309025904", "Diners Club"),
    ("38520000023237", "Diners Club"),
    ("36006666333344", "Diners Club"),
    ("3566002020360505", "JCB"),
    ("3530111333300000", "JCB"),
    ("3566111111111113", "JCB"),
    ("3569990010095841", "JCB"),
    ("6200000000000005", "UnionPay"),
    ("6200000000000047", "UnionPay"),
    ("6205500000000000004", "UnionPay"),  # 19 digits
    ("6243030000000001", "UnionPay"),
    ("6250946000000016", "UnionPay"),
    ("6759649826438453", "Maestro"),
    ("6799990100000000019", "Maestro"),  # 19 digits
    ("6799998900000099990", "Maestro"),
    ("6000070736169237003", "Maestro"),  # Dutch Maestro, 19 digits
    ("6304000000000000", "Maestro"),
    ("6304000000000000018", "Maestro"),
    ("6771798021000008", "Maestro"),
    ("6703444444444449", "Maestro"),  # Bancontact
    ("67030000000000003", "Maestro"),  # Bancontact, 17 digits
    ("5018000000000009", "Maestro"),
    ("2200000000000004", "Mir"),
    ("2201382000000013", "Mir"),
    ("5066991111111118", "Elo"),
    (
        "6062828888666688",
        "RuPay",
    ),  # Hipercard; 60 is shared with RuPay, the first row that admits it
    ("5019555544445555", "Dankort"),
    ("5019717010103742", "Dankort"),
]


def grouped(number: str) -> list[str]:
    """The groupings cards are printed in, joined by a space and by a dash."""
    size = len(number)
    if size == 15:
        cuts = [(0, 4), (4, 10), (10, 15)]  # 4-6-5 (American Express)
    elif size == 14:
        cuts = [(0, 4), (4, 10), (10, 14)]  # 4-6-4 (Diners Club)
    else:
        cuts = [(i, min(i + 4, size)) for i in range(0, size, 4)]  # 4-4-4-4, 4-4-4-4-3 ...
    groups = [number[a:b] for a, b in cuts]
    return [" ".join(groups), "-".join(groups)]


# Where a card is written: plain, prose, JSON, CSV, a COPY line, a log line, URLs, markup.
CONTEXTS = [
    "{}",
    "Card: {}.",
    "paid with {}, exp 12/27",
    '{{"card": "{}", "amount": 19.99}}',
    "42,{},2024-01-15,19.99",
    "42\t{}\t\\N",
    "2024-01-15T12:30:45.123Z INFO charge card={} amount=19.99 currency=EUR",
    "https://pay.example.com/v1/cards/{}/charges?expand=1",
    "https://pay.example.com/charge?card={}&cvc=123",
    "(card {})",
    "<pan>{}</pan>",
    "'{}'",
    "x{}y",
]


def card_cases() -> list[tuple[str, str]]:
    cases = []
    for number, _ in PUBLISHED_TEST_CARDS:
        for form in [number, *grouped(number)]:
            for context in CONTEXTS:
                cases.append((context.format(form), context.format(masked(number))))
    return cases


@pytest.mark.parametrize(("number", "network"), PUBLISHED_TEST_CARDS)
def test_published_test_card_is_in_its_networks_range(number: str, network: str) -> None:
    assert luhn_ok(number)
    assert card_network(number) == network


@pytest.mark.parametrize(("text", "expected"), card_cases())
def test_published_test_card_masked_wherever_written(text: str, expected: str) -> None:
    assert CARDS.mask_text(text) == expected


def test_json_number_card_masked() -> None:
    # A bigint card in a JSON document is masked too; the value then is a string-shaped token,
    # which is the documented price of catching it.
    assert CARDS.mask_text('{"pan": 4111111111111111}') == '{"pan": ****-****-****-1111}'


def test_two_cards_and_an_ssn_in_one_log_line() -> None:
    text = "ssn=123-45-6789 old=4111 1111 1111 1111 new=5555-5555-5555-4444"
    assert MASKER.mask_text(text) == (
        "ssn=***-**-6789 old=****-****-****-1111 new=****-****-****-4444"
    )


# Range boundaries: (IIN prefix, length, network or None). The number is the prefix padded with
# zeros and completed with its Luhn digit, so only the range and the length decide.
BOUNDARIES = [
    ("4", 13, "Visa"),
    ("4", 16, "Visa"),
    ("4", 19, "Visa"),
    ("4", 14, None),
    ("4", 15, None),
    ("4", 17, None),
    ("4", 18, None),
    ("51", 16, "Mastercard"),
    ("55", 16, "Mastercard"),
    ("51", 15, None),
    ("51", 17, None),
    ("50", 16, None),
    ("56", 16, None),
    ("2221", 16, "Mastercard"),
    ("2720", 16, "Mastercard"),
    ("2220", 16, None),
    ("2721", 16, None),
    ("34", 15, "American Express"),
    ("37", 15, "American Express"),
    ("34", 16, None),
    ("35", 15, None),
    ("33", 15, None),
    ("6011", 16, "Discover"),
    ("6011", 19, "Discover"),
    ("644", 16, "Discover"),
    ("649", 16, "Discover"),
    ("643", 16, None),
    ("65", 16, "Discover"),
    ("65", 15, None),
    ("622126", 16, "Discover"),
    ("622925", 19, "Discover"),
    ("62", 16, "UnionPay"),
    ("62", 15, None),
    ("3528", 16, "JCB"),
    ("3589", 19, "JCB"),
    ("3527", 16, None),
    ("3590", 16, None),
    ("300", 14, "Diners Club"),
    ("305", 14, "Diners Club"),
    ("3095", 14, "Diners Club"),
    ("36", 14, "Diners Club"),
    ("38", 16, "Diners Club"),
    ("39", 19, "Diners Club"),
    ("306", 14, None),
    ("3094", 14, None),
    ("36", 13, None),
    ("5018", 13, "Maestro"),
    ("5020", 19, "Maestro"),
    ("5038", 16, "Maestro"),
    ("5893", 16, "Maestro"),
    ("6304", 19, "Maestro"),
    ("6759", 13, "Maestro"),
    ("6763", 16, "Maestro"),
    ("67", 17, "Maestro"),
    ("6305", 16, None),
    ("2200", 16, "Mir"),
    ("2204", 19, "Mir"),
    ("2205", 16, "BORICA"),
    ("2206", 16, None),
    ("60", 16, "RuPay"),
    ("60", 19, "Maestro"),
    ("60", 15, None),
    ("508", 16, "RuPay"),
    ("81", 16, "RuPay"),
    ("82", 16, "RuPay"),
    ("81", 19, None),
    ("83", 16, None),
    ("506099", 18, "Verve"),
    ("507964", 19, "Verve"),
    ("504175", 16, "Elo"),
    ("509000", 16, "Elo"),
    ("636368", 16, "Elo"),
    ("5019", 16, "Dankort"),
    ("8600", 16, "Uzcard"),
    ("9860", 16, "Humo"),
    ("9704", 19, "Napas"),
    ("9792", 16, "Troy"),
    ("9793", 16, None),
    ("1", 15, None),  # UATP is not accepted (documented)
    ("1", 16, None),
    ("0", 16, None),
    ("7", 16, None),
    ("31", 19, None),  # China T-Union is not accepted (documented)
    ("89", 19, None),  # SIM card ICCIDs
]


def ean13_ok(number: str) -> bool:
    """GS1 check digit (weights 1, 3, 1, ... from the left); independent of the implementation."""
    return sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(number)) % 10 == 0


@pytest.mark.parametrize(("prefix", "length", "network"), BOUNDARIES)
def test_issuer_range_and_length_decide(prefix: str, length: int, network: str | None) -> None:
    # A 13-digit number that is also a valid EAN-13 is taken for a barcode: pick one that is not.
    number = next(
        n
        for filler in "7319"
        if not ean13_ok(n := luhn_complete(prefix + "0" * (length - len(prefix) - 2) + filler))
        or length != 13
    )
    assert card_network(number) == network
    expected = masked(number) if network is not None else number
    assert CARDS.mask_text(f"n={number};") == f"n={expected};"


def test_every_network_range_is_documented() -> None:
    # docs/masking.md lists every accepted range as a row "| network | first-last | lengths |".
    rows = set()
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        m = re.fullmatch(r"\| ([A-Za-z ]+) \| `(\d+)`(?:-`(\d+)`)? \| ([\d, -]+) \|.*", line)
        if m:
            lengths: set[int] = set()
            for part in m.group(4).split(","):
                low, _, high = part.strip().partition("-")
                lengths.update(range(int(low), int(high or low) + 1))
            rows.add((m.group(1), m.group(2), m.group(3) or m.group(2), frozenset(lengths)))
    table = {(n, first, last, frozenset(lengths)) for n, first, last, lengths in CARD_NETWORKS}
    assert rows == table


# --- false positives ---------------------------------------------------------------------------

EAN13_AND_LUHN = "4006381300063"  # a German product barcode that also passes Luhn

ORDINARY_NUMBERS = [
    # zeros and repeated digits: out of every range, or one digit repeated
    *("0" * n for n in range(13, 20)),
    "1.00000000000000",
    "1.0000000000000000",
    "0.0000000000000000",
    "100000000000000000",
    "4" * 16,
    "5" * 16,
    "6" * 16,
    "4" * 13,
    "4444 4444 4444 4444",
    "5555-5555-5555-5555",
    # fractions and integer parts of decimal numbers
    "0.4111111111111111",
    "1.4111111111111111",
    "-0.5555555555554444",
    "12.378282246310005",
    "3.1415926535897932384626",
    "4111111111111111.0",
    "4111111111111111.00",
    "amount=4111111111111111.50 EUR",
    "[0.4111111111111111, 0.5555555555554444]",
    # scientific notation
    "4.111111111111111e+15",
    "4.111111111111111E+15",
    "5.555555555554444e-07",
    "1e+4111111111111111",
    "1E-5555555555554444",
    "4111111111111111e5",
    # digit runs longer than any card, also holding a valid card window
    "41111111111111111111",
    "94111111111111111111",
    "4111111111111111000000000",
    "1234567890123456789012345",
    "0004111111111111111",
    # timestamps
    "20261201123045123456",
    "1733050000000",
    "1733050000000000",
    "1733050000000000000",
    "2026-12-01 12:30:45.123456",
    "2026-12-01T12:30:45.1234567890123Z",
    "2024-01-15 2024-01-16",
    # identifiers
    "7f3c2a10-5b8e-4d2f-9c1a-0e6b7d8f9a21",
    "12345678-1234-1234-1234-123456789012",
    "41111111-1111-1111-1111-111111111111",
    "deadbeef4111111111111111cafebabe",
    "sha256:e3b0c442" + "4111111111111111" + "98fc1c149afbf4c8996fb924",
    "\\x34313131313131313131313131313131",
    "356938035643809",  # IMEI (Luhn-valid, 15 digits, no network issues 15 digits from 35)
    "8944500102198304826",  # SIM ICCID (Luhn-valid, 19 digits from 89)
    "9780201633610",  # ISBN-13
    EAN13_AND_LUHN,
    "1000000000000008",  # Luhn-valid, no network starts with 1
    "7000000000000005",
    "9000000000000001",
    # phone numbers
    "+4915112345678",
    "tel:+4366412345678",
    "+44 20 7946 0958",
    "+1 (555) 123-4567",
    "call 555-123-4567 or 555-987-6543",
    "+49 151 1234 5678",
    # order numbers and the like that fail Luhn
    "4111111111111112",
    "order 5555555555554445",
    "ORD-4242424242424241",
    "5500 0000 0000 0005",
    # Luhn-valid and in a network's range, but of a length that network does not issue
    luhn_complete("4" + "1" * 12),  # 14-digit "Visa"
    luhn_complete("4" + "1" * 13),  # 15-digit "Visa"
    luhn_complete("4" + "1" * 16),  # 18-digit "Visa"
    luhn_complete("5" + "1" * 15),  # 17-digit "Mastercard"
    luhn_complete("37" + "8" * 14),  # 17-digit "American Express"
    luhn_complete("3520" + "6" * 11),  # 16 digits from 35, below JCB's 3528-3589
    luhn_complete("3566" + "6" * 10),  # 15 digits from JCB's range: JCB issues 16-19
    # groupings no card is printed in
    "4111 111111 111111",
    "411 1111 1111 1111 1",
    "41111 11111 11111 1",
    "4111-11-1111-1111-11",
    "4111  1111  1111  1111",
    "4111.1111.1111.1111",
    "4,111,111,111,111,111",
    "4_111_111_111_111_111",
]


@pytest.mark.parametrize("text", ORDINARY_NUMBERS)
def test_ordinary_number_untouched(text: str) -> None:
    assert MASKER.mask_text(text) is text


# Spread over the whole 128-bit space (a multiplicative hash of i), plus all-digit ones.
UUIDS = [str(uuid.UUID(int=(i * 0x9E3779B97F4A7C15F39CC0605CEDC835) % 2**128)) for i in range(60)]
UUIDS += [str(uuid.UUID(f"{i:032d}")) for i in (4111111111111111, 5555555555554444, 10**31)]


@pytest.mark.parametrize("value", UUIDS)
def test_uuids_untouched(value: str) -> None:
    assert MASKER.mask_text(value) is value


def test_ean13_check_is_what_spares_the_barcode() -> None:
    # The barcode is a Luhn-valid number of Visa's 13-digit length: only its EAN-13 check digit
    # spares it. A 13-digit Visa whose digits are no barcode is still masked.
    assert card_network(EAN13_AND_LUHN) == "Visa" and luhn_ok(EAN13_AND_LUHN)
    assert CARDS.mask_text(EAN13_AND_LUHN) is EAN13_AND_LUHN
    assert CARDS.mask_text("4222222222222") == masked("4222222222222")


def test_plus_prefix_spares_phone_lengths_only() -> None:
    # E.164 numbers have at most 15 digits; "+" before a 16-digit card is not a phone number.
    assert CARDS.mask_text("+4222222222222") == "+4222222222222"
    assert CARDS.mask_text("+4111111111111111") == "+****-****-****-1111"


def test_negative_number_shape_is_still_a_card() -> None:
    # "-" is a card separator and the sign of a bigint alike: when in doubt, mask.
    assert CARDS.mask_text("-4111111111111111") == "-****-****-****-1111"


def test_sentence_full_stop_is_not_a_decimal_point() -> None:
    assert CARDS.mask_text("Card 4111111111111111. Thanks") == "Card ****-****-****-1111. Thanks"


def test_short_hex_glue_is_not_a_hash() -> None:
    # Letters around a card make a hex token of 17 characters, shorter than any hash.
    assert CARDS.mask_text("Visa4111111111111111d") == "Visa****-****-****-1111d"


# --- properties --------------------------------------------------------------------------------


def is_card_run(run: str) -> bool:
    """A digit run the detector may mask: a real card in a real range (test-side Luhn)."""
    return (
        13 <= len(run) <= 19
        and luhn_complete(run[:-1]) == run
        and len(set(run)) > 1
        and card_network(run) is not None
    )


numbers = st.one_of(
    st.integers(min_value=10**11, max_value=10**20),
    st.integers(min_value=-(10**20), max_value=-(10**11)),
    st.integers(min_value=10**20, max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=1e12, max_value=1e20),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.builds(
        lambda i, f, e: Decimal(f"{i}.{f}E{e}"),
        st.integers(min_value=0, max_value=10**20),
        st.integers(min_value=0, max_value=10**20),
        st.integers(min_value=-30, max_value=30),
    ),
)
INT_FORMATS = ["", "d", ",", "_", "+d", "025d"]
FLOAT_FORMATS = ["", "f", ".20f", ".0f", "e", ".18e", "g", ".25g", ",f", "E", "%"]
DECIMAL_FORMATS = ["", "f", ".20f", ".0f", "e", "g", ",f", "E"]


@st.composite
def rendered_numbers(draw: st.DrawFn) -> str:
    value = draw(numbers)
    how = draw(st.sampled_from(["str", "repr", "format"]))
    if how == "str":
        return str(value)
    if how == "repr":
        return repr(value)
    if isinstance(value, int):
        spec = draw(st.sampled_from(INT_FORMATS))
    elif isinstance(value, float):
        spec = draw(st.sampled_from(FLOAT_FORMATS))
    else:
        spec = draw(st.sampled_from(DECIMAL_FORMATS))
    return format(value, spec)


@given(text=rendered_numbers())
@settings(max_examples=1500, deadline=None)
@example(text="1.00000000000000")
@example(text="0.4111111111111111")
@example(text="20261201123045123456")
def test_rendered_number_without_a_card_is_returned_unchanged(text: str) -> None:
    # What Python's str/repr/format print for int, float and Decimal: unless a whole 13-19 digit
    # run is a valid card in a valid range, masking returns the very same object.
    assume(not any(is_card_run(run) for run in re.findall(r"[0-9]+", text)))
    assert MASKER.mask_text(text) is text


card_bodies = st.builds(
    lambda prefix, rest: luhn_complete(prefix + rest),
    st.sampled_from(["4", "51", "2221", "34", "6011", "62", "3528", "36", "6304"]),
    st.text(alphabet="0123456789", min_size=12, max_size=17),
)


@given(
    integer=st.integers(min_value=0, max_value=10**6),
    card=card_bodies,
    exponent=st.integers(min_value=-20, max_value=20),
    form=st.sampled_from(
        ["{i}.{c}", "-{i}.{c}", "{c}.{i}", "{i}.{c}e{e:+d}", "{c}e{e:+d}", "{i}e{c}", "{i}E-{c}"]
    ),
)
@settings(max_examples=500, deadline=None)
def test_fraction_and_exponent_digits_are_never_a_card(
    integer: int, card: str, exponent: int, form: str
) -> None:
    # Even a valid card, when written after a decimal point, before one, or as an exponent or a
    # mantissa, is part of a number: a real card is never written that way.
    text = form.format(i=integer, c=card, e=exponent)
    assert MASKER.mask_text(text) is text
    assert MASKER.mask_text(f'{{"x": {text}}}') == f'{{"x": {text}}}'


@given(number=st.integers(min_value=10**19, max_value=10**40), at=st.integers(min_value=0))
@settings(max_examples=300, deadline=None)
def test_card_window_inside_a_longer_run_is_never_masked(number: int, at: int) -> None:
    # Plant a valid card anywhere inside a 20+ digit run: the run is one number, not a card.
    digits = str(number)
    card = "4111111111111111"
    at %= len(digits)
    text = digits[:at] + card + digits[at:]
    assert CARDS.mask_text(text) is text
