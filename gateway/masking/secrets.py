"""Secrets: API keys and tokens, private keys, JWTs, passwords in URLs, key/value pairs and SQL.
See docs/masking.md, "secrets"."""

from __future__ import annotations

import re
from collections.abc import Iterator

from gateway.masking.findings import Finding

# --- secrets -----------------------------------------------------------------------------------

_AWS_KEY_ID = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
_PEM_BEGIN = re.compile(r"-----BEGIN (?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END (?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY(?: BLOCK)?-----")
# header.payload.signature; both JSON parts start with '{"', base64url "eyJ". Possessive runs: a
# failed match never retries shorter runs.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]++\.eyJ[A-Za-z0-9_-]++\.[A-Za-z0-9_-]*+")
_B64URL_RUN = re.compile(r"[A-Za-z0-9_-]*+")
# Fixed-shape vendor tokens. Bounded possessive bodies plus a trailing boundary: a longer run is
# not a token, and the check fails at once instead of backtracking through the body.
_GITHUB_TOKEN = re.compile(
    r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,251}+|github_pat_[A-Za-z0-9_]{22,244}+)"
    r"(?![A-Za-z0-9_])"
)
_STRIPE_KEY = re.compile(r"(?<![A-Za-z0-9])[sr]k_(?:live|test)_[A-Za-z0-9]{10,247}+(?![A-Za-z0-9])")
# The newer patterns start with their literal prefix and check the word start in a lookbehind
# after it: a pattern that starts with a literal is searched for in C faster than a substring
# test would be. A regex call still costs ~200 ns however short the text, so each is gated on
# the length and on one rare letter of its prefix (memchr): UUIDs, timestamps and numbers,
# which hold dashes, skip them all.
_SLACK_TOKEN = re.compile(r"x(?<![A-Za-z0-9]x)(?:ox[abeposr]|app)-[A-Za-z0-9-]{10,250}+")
_GOOGLE_API_KEY = re.compile(r"AIza(?<![A-Za-z0-9_-]AIza)[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-])")
_NPM_TOKEN = re.compile(r"(?<![A-Za-z0-9_])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9_])")
# glpat- (personal, project and group access tokens), gldt- (deploy), glrt- (runner); newer
# tokens carry dot-separated routing parts.
_GITLAB_TOKEN = re.compile(
    r"gl(?<![A-Za-z0-9_-]gl)(?:pat|dt|rt)-[A-Za-z0-9_-]{20,250}+(?:\.[A-Za-z0-9_-]{1,64}+){0,3}+"
)
_LLM_API_KEY = re.compile(
    r"sk-(?<![A-Za-z0-9_-]sk-)(?:(?:(ant)|proj|svcacct|admin)-[A-Za-z0-9_-]{32,250}+"
    r"|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}(?![A-Za-z0-9_-]))"
)
# The tokens with a prefix ending in "_": one search for "_" with the prefixes as lookbehinds
# stays in the regex engine's C loop, where a substring test per prefix costs ~1 ns per
# character each. (A regex call costs ~200 ns however short the text, so the families keyed on
# other characters use one-character tests and length gates instead.)
_UNDERSCORE_TOKEN_MARK = re.compile(r"_(?:(?<=gh[pousr]_)|(?<=github_)|(?<=[sr]k_)|(?<=npm_))")
# scheme://user:password@host -> the password. Matched from just after each "://"; the user part
# cannot contain "/" so one attempt never runs past the next "://". Angle brackets are excluded
# so this detector's own "<secret:...>" replacements are never taken for userinfo.
_URL_USERINFO = re.compile(r"[^\s/:@<>]{0,256}+:([^\s/@<>]{1,1024}+)@")
# key=value / key: value / "key": "value". Only the value is masked. Driven from each "=" or ":"
# (found at memchr speed): the key is searched in a short window ending at the separator (with
# endpos, \Z matches at the window's end), so prose is never scanned by a case-insensitive
# alternation at every position. Bare values stop at whitespace and at the delimiters of query
# strings, env files and markup. "<secret:" is this detector's own replacement, not a key.
_KEY_BEFORE = re.compile(
    r"(?<!<)(?:password|passwd|secret|token|api[_-]?key|apikey|(?:secret|private|access)[_-]?key"
    r"|authorization)([\"']?)[ \t]{0,8}\Z",
    re.IGNORECASE,
)
_KEY_WINDOW = 32  # the longest key ("authorization", 13) + a quote + 8 blanks, with room
_VALUE_AFTER = re.compile(
    r"[ \t]{0,8}(?:(?:bearer|basic|token)[ \t]{1,8})?"
    r"(?:\"((?:[^\"\\\r\n]|\\.)++)|'((?:[^'\\\r\n]|\\.)++)|([^\s\"',;&<>]++))",
    re.IGNORECASE,
)
_CHARS_PER_WINDOW_CHECK = 64
# Bare values that are no secret: literals ("secret: false", "{'token': None}") and the bind
# placeholders of SQL text ("WHERE password = $1", "= ?", "= %s", "= %(pw)s", "= :pw").
_LITERALS = frozenset(("null", "true", "false", "none"))
_PLACEHOLDER = re.compile(
    r"\$[0-9]{1,5}|\?|%s|%\([A-Za-z_][A-Za-z0-9_]{0,62}\)s|:[A-Za-z_][A-Za-z0-9_]{0,62}"
)
_IDENTIFIER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
# SQL's own password syntax: PASSWORD 'pw' (PostgreSQL CREATE/ALTER ROLE, user mapping options)
# and IDENTIFIED [WITH plugin] BY 'pw' (MySQL, Oracle). Driven from each "'" after a blank that
# follows a "d", a "y" or another blank: a literal search with a fixed lookbehind stays in C,
# whereas any pattern that starts with the keyword scans the whole text at ~6 ns a character.
# The keyword is then checked in a short window before the quote, as for key/value pairs.
_SQL_SECRET_QUOTE = re.compile(r"'(?<=[DdYy \t\r\n][ \t\r\n]')")
_SQL_SECRET_KEYWORD = re.compile(
    r"(?<![A-Za-z0-9_])(?:password|identified(?:[ \t\r\n]+with[ \t\r\n]+[A-Za-z0-9_]{1,64})?"
    r"[ \t\r\n]+by)[ \t\r\n]{1,8}\Z",
    re.IGNORECASE,
)
_SQL_KEYWORD_WINDOW = 96  # "identified with" + a 64-character plugin name + "by"
# The body of a standard SQL string: '' is an escaped quote; possessive, so no backtracking.
_SQL_STRING_BODY = re.compile(r"(?:[^']|'')*+")


class SecretsDetector:
    """Credentials: cloud keys, private keys, tokens and ``password=...`` pairs.

    Kinds and replacements: AWS access key ids (``AKIA``/``ASIA`` + 16) -> ``<secret:aws_access_key>``;
    PEM private key blocks -> ``<secret:private_key>`` (a BEGIN line with no END masks to the end
    of the value: the key may continue in the next chunk); JWTs -> ``<secret:jwt>``; GitHub tokens
    -> ``<secret:github_token>``; GitLab tokens -> ``<secret:gitlab_token>``; Slack tokens ->
    ``<secret:slack_token>``; Stripe secret and restricted keys -> ``<secret:stripe_key>``; Google
    API keys -> ``<secret:google_api_key>``; npm tokens -> ``<secret:npm_token>``; Anthropic and
    OpenAI API keys -> ``<secret:anthropic_key>`` / ``<secret:openai_key>``. Key/value pairs
    (``password=``, ``secret:``, ``"api_key": "..."``, ``Authorization: Bearer ...``), SQL's
    ``PASSWORD '...'`` / ``IDENTIFIED BY '...'`` and URL passwords keep the key and mask the
    value as ``****``. Bare values that are literals (``true``, ``null``, ``None``) or SQL bind
    placeholders (``$1``, ``?``, ``%s``, ``:name``) are no secret, and a key word that is part of
    a path (``/run/secrets/token:/x``) is no key.
    """

    name = "secrets"
    min_length = 7  # "token=x"

    def scan(self, text: str) -> list[Finding]:
        size = len(text)
        if size < 7:
            return []
        found: list[Finding] = []
        # A one-character "in" runs at memchr speed; a longer needle costs ~1 ns per character.
        # So each family is gated on a character it must contain before its own substring test.
        if "A" in text:
            if "AKIA" in text or "ASIA" in text:
                self._simple(_AWS_KEY_ID, text, "<secret:aws_access_key>", found)
            if size >= 39 and "z" in text:  # "AIza" + 35
                self._simple(_GOOGLE_API_KEY, text, "<secret:google_api_key>", found)
        if "-" in text:
            if "-----BEGIN" in text:
                self._pem(text, found)
            if size >= 25 and "g" in text:  # "gldt-" + 20
                self._simple(_GITLAB_TOKEN, text, "<secret:gitlab_token>", found)
            if size >= 39 and "k" in text:  # "sk-ant-" + 32
                self._llm_keys(text, found)
        if "J" in text and "eyJ" in text:
            self._jwt(text, found)
        if "_" in text and _UNDERSCORE_TOKEN_MARK.search(text) is not None:
            self._simple(_GITHUB_TOKEN, text, "<secret:github_token>", found)
            self._simple(_STRIPE_KEY, text, "<secret:stripe_key>", found)
            self._simple(_NPM_TOKEN, text, "<secret:npm_token>", found)
        if size >= 15 and "x" in text:  # "xoxb-" + 10
            self._simple(_SLACK_TOKEN, text, "<secret:slack_token>", found)
        if "/" in text and "://" in text:
            self._url_passwords(text, found)
        if "=" in text or ":" in text:
            self._key_values(text, found)
        if size >= 12 and "'" in text:  # "PASSWORD 'x'"
            self._sql_passwords(text, found)
        return found

    def _simple(
        self, pattern: re.Pattern[str], text: str, label: str, found: list[Finding]
    ) -> None:
        found.extend(Finding(m.start(), m.end(), label, self.name) for m in pattern.finditer(text))

    def _llm_keys(self, text: str, found: list[Finding]) -> None:
        for m in _LLM_API_KEY.finditer(text):
            label = "<secret:anthropic_key>" if m.group(1) else "<secret:openai_key>"
            found.append(Finding(m.start(), m.end(), label, self.name))

    def _pem(self, text: str, found: list[Finding]) -> None:
        pos = 0
        while (begin := _PEM_BEGIN.search(text, pos)) is not None:
            end = _PEM_END.search(text, begin.end())
            stop = end.end() if end is not None else len(text)
            found.append(Finding(begin.start(), stop, "<secret:private_key>", self.name))
            pos = stop

    def _jwt(self, text: str, found: list[Finding]) -> None:
        pos = text.find("eyJ")
        while pos >= 0:
            token = _JWT.match(text, pos)
            if token is not None:
                found.append(Finding(pos, token.end(), "<secret:jwt>", self.name))
                resume = token.end()
            else:
                # Every "eyJ" later in this run would fail for the same reason (what follows the
                # run), so skip the run: without this, "eyJeyJeyJ..." is quadratic.
                run = _B64URL_RUN.match(text, pos)
                resume = run.end() if run is not None else pos + 3
            pos = text.find("eyJ", resume)

    def _url_passwords(self, text: str, found: list[Finding]) -> None:
        pos = text.find("://")
        while pos >= 0:
            userinfo = _URL_USERINFO.match(text, pos + 3)
            if userinfo is not None:
                found.append(Finding(userinfo.start(1), userinfo.end(1), "****", self.name))
            pos = text.find("://", pos + 3)

    def _key_values(self, text: str, found: list[Finding]) -> None:
        # Dense separators (JSON, logs): one pass over the lowered text for any key word is
        # cheaper than looking at the window before each separator (~5 ns per character against
        # ~300 ns per window).
        dense = (text.count("=") + text.count(":")) * _CHARS_PER_WINDOW_CHECK > len(text)
        if dense and not _has_key_word(text.lower()):
            return
        resume = 0  # separators inside a value already masked are not keys
        for sep in _separators(text):
            if sep < resume:
                continue
            window_start = max(0, sep - _KEY_WINDOW)
            # Lower the window itself: str.lower() can change lengths ("İ" becomes two code
            # points), so offsets into the lowered whole text would drift.
            window = text[window_start:sep].lower()
            if not _has_key_word(window):
                continue
            key = _KEY_BEFORE.search(text, window_start, sep)
            if key is None or _is_path_segment(text, key.start(), window_start):
                continue
            value = _VALUE_AFTER.match(text, sep + 1)
            if value is None:
                continue
            finding = self._value_finding(key.group(1), value)
            if finding is not None:
                found.append(finding)
                resume = finding.end

    def _value_finding(self, key_quote: str, value: re.Match[str]) -> Finding | None:
        if value.group(3) is None:
            group = 1 if value.group(1) is not None else 2
            return Finding(value.start(group), value.end(group), "****", self.name)
        start, end = value.span(3)
        bare = value.group(3)
        if key_quote:
            # A quoted key with a bare value is JSON (or a Python repr): the value ends at the
            # closing bracket, and the mask is quoted so the document stays parseable.
            cut = min((i for i in (bare.find("}"), bare.find("]")) if i >= 0), default=len(bare))
            bare = bare[:cut]
            end = start + cut
        if not bare or bare.lower() in _LITERALS or _PLACEHOLDER.fullmatch(bare) is not None:
            return None
        return Finding(start, end, f"{key_quote}****{key_quote}", self.name)

    def _sql_passwords(self, text: str, found: list[Finding]) -> None:
        for quote in _SQL_SECRET_QUOTE.finditer(text):
            opening = quote.start()
            if (
                _SQL_SECRET_KEYWORD.search(text, max(0, opening - _SQL_KEYWORD_WINDOW), opening)
                is None
            ):
                continue
            body = _SQL_STRING_BODY.match(text, opening + 1)
            end = body.end() if body is not None else opening + 1  # "*+" always matches
            # An unterminated literal (a query text cut at track_activity_query_size) is
            # masked to the end of the value.
            if end > opening + 1:
                found.append(Finding(opening + 1, end, "****", self.name))


def _is_path_segment(text: str, key_start: int, window_start: int) -> bool:
    """True when the identifier holding the key word at ``key_start`` follows "/" or "\\".

    "/run/secrets/db_password:/etc/pw:ro" is a volume mount and "/oauth/token:revoke" a route:
    a file or URL path, not a key.
    """
    pos = key_start
    while pos > window_start and text[pos - 1] in _IDENTIFIER_CHARS:
        pos -= 1
    return pos > 0 and text[pos - 1] in "/\\"


def _has_key_word(lowered: str) -> bool:
    # Spelled out: any() over a generator costs more than the five searches on short windows.
    return (
        "pass" in lowered
        or "secret" in lowered
        or "token" in lowered
        or "key" in lowered
        or "authorization" in lowered
    )


def _separators(text: str) -> Iterator[int]:
    """Positions of "=" and ":" in ``text``, in increasing order."""
    eq = text.find("=")
    colon = text.find(":")
    while eq >= 0 or colon >= 0:
        if colon < 0 or 0 <= eq < colon:
            yield eq
            eq = text.find("=", eq + 1)
        else:
            yield colon
            colon = text.find(":", colon + 1)
