"""The words a rule may name: categories, and each protocol's kinds and flags.

The core knows no protocol, so every connector declares, through the
``wardgate_command_vocabulary`` hook, each kind and flag its classifier can put on a
:class:`~gateway.model.Command`. A rule's ``sql``/``commands`` entries must then be categories or
kinds, and its ``flags`` entries flags, of a protocol the rule can apply to. Without this check a
typo is a rule that silently never matches: ``sql = ["delte"]`` in a deny rule denies nothing.

A rule limited by ``protocols`` is checked against those protocols' words; a rule without is
valid when the word exists for any installed protocol. A protocol whose connector declares no
vocabulary cannot be checked: rules that may apply to it are accepted as written.
"""

from __future__ import annotations

import difflib
import textwrap
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from gateway.config_schema import config_error
from gateway.errors import PluginError
from gateway.model import Category

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.plugins import PluginHost

CATEGORIES: tuple[str, ...] = tuple(str(c) for c in Category)
LISTING_COMMAND = "wardgate config check --vocabulary"
_SHOWN_KINDS = 8  # kinds sharing a typo's first word, named in its error


@dataclass(frozen=True, slots=True)
class CommandVocabulary:
    """Every kind and flag one protocol's connector can put on a Command.

    ``kinds`` must cover everything the classifier can produce (a kind missing here makes a
    correct rule a configuration error); a word that can never be produced only weakens the
    typo check. Words are lower case, as rules are matched after lower-casing. A kind may not be
    spelled like a category: ``sql = ["read"]`` would then mean two things.
    """

    protocol: str
    kinds: frozenset[str]
    flags: frozenset[str]

    def __post_init__(self) -> None:
        if not isinstance(self.protocol, str) or not self.protocol:
            raise ValueError("a vocabulary needs a protocol name")
        for label, words in (("kind", self.kinds), ("flag", self.flags)):
            for word in words:
                if not isinstance(word, str) or not word or word != word.lower() or (
                    word != word.strip() or " " in word
                ):
                    raise ValueError(f"{self.protocol} {label} {word!r} is not a lower-case word")
        clash = sorted(self.kinds & set(CATEGORIES))
        if clash:
            raise ValueError(f"{self.protocol} kinds {clash} are spelled like categories")

    def merged(self, other: CommandVocabulary) -> CommandVocabulary:
        return CommandVocabulary(
            self.protocol, self.kinds | other.kinds, self.flags | other.flags
        )


def collect_vocabularies(plugins: PluginHost) -> dict[str, CommandVocabulary]:
    """Every plugin's vocabularies by protocol; two for one protocol are united."""
    found: dict[str, CommandVocabulary] = {}
    for impl in plugins.hook.wardgate_command_vocabulary.get_hookimpls():
        try:
            offered = cast("Iterable[object]", impl.function() or ())
            items = list(offered)
        except Exception as exc:  # foreign code: any failure is the operator's to fix
            raise PluginError(
                f"plugin {impl.plugin_name!r} failed to declare its command vocabulary: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        for item in items:
            if not isinstance(item, CommandVocabulary):
                raise PluginError(
                    f"plugin {impl.plugin_name!r} returned {type(item).__name__} from "
                    "wardgate_command_vocabulary; expected gateway.vocabulary.CommandVocabulary"
                )
            known = found.get(item.protocol)
            found[item.protocol] = item if known is None else known.merged(item)
    return found


def check_rule_vocabulary(
    config: Config, vocabularies: Mapping[str, CommandVocabulary], protocols: Collection[str]
) -> None:
    """Raise ConfigError for the first rule word no protocol the rule can apply to knows.

    ``protocols`` are the installed connectors' protocols (the protocols a rule without a
    ``protocols`` filter applies to).
    """
    for rule in config.rules:
        applies_to = sorted(rule.protocols) if rule.protocols is not None else sorted(protocols)
        if not applies_to or any(p not in vocabularies for p in applies_to):
            continue  # some protocol's words are unknown: any word may be one of them
        own = [vocabularies[p] for p in applies_to]
        others = [v for p, v in sorted(vocabularies.items())
                  if p in protocols and p not in applies_to]
        key = "commands" if ("rules", rule.name, "commands") in config.origins else "sql"
        for word in sorted(rule.commands or ()):
            if word not in CATEGORIES and not any(word in v.kinds for v in own):
                where = f'[[rules]] "{rule.name}" {key}'
                raise config_error(rule.source, where, _unknown_kind(word, own, others))
        for word in sorted(rule.flags or ()):
            if not any(word in v.flags for v in own):
                where = f'[[rules]] "{rule.name}" flags'
                raise config_error(rule.source, where, _unknown_flag(word, key, own, others))


def _unknown_kind(
    word: str, own: list[CommandVocabulary], others: list[CommandVocabulary]
) -> str:
    names = _names(own)
    kinds = sorted(set().union(*(v.kinds for v in own)))
    if any(word in v.flags for v in own):
        return f'"{word}" is a flag, not a kind or category: write it as flags = ["{word}"]'
    if ":" in word:
        head = word.split(":", 1)[0]
        return (f'"{word}" is not a kind: rules cannot name single {head}s ({head}:...); name '
                f"the category the call puts a statement in (admin, write, unknown, ...) or a "
                f"kind; see `{LISTING_COMMAND}`")
    elsewhere = [v.protocol for v in others if word in v.kinds]
    if elsewhere:
        return (f'"{word}" is a kind of protocol {", ".join(elsewhere)}, but this rule applies '
                f"only to {names}; add the protocol to protocols or move the word to a rule of "
                f"its own")
    message = f'unknown kind or category "{word}"{_did_you_mean(word, [*CATEGORIES, *kinds])}'
    message += f"; categories: {', '.join(CATEGORIES)}"
    related = _by_likeness(word, [k for k in kinds if k.split("_")[0] == word.split("_")[0]])
    if related:
        shown = ", ".join(related[:_SHOWN_KINDS])
        more = f" and {len(related) - _SHOWN_KINDS} more" if len(related) > _SHOWN_KINDS else ""
        message += f"; {names} kinds like it: {shown}{more}"
    return message + f"; {len(kinds)} {names} kinds in all: see `{LISTING_COMMAND}`"


def _unknown_flag(
    word: str, key: str, own: list[CommandVocabulary], others: list[CommandVocabulary]
) -> str:
    names = _names(own)
    if word in CATEGORIES or any(word in v.kinds for v in own):
        what = "category" if word in CATEGORIES else "kind"
        return f'"{word}" is a {what}, not a flag: write it in {key} = ["{word}"]'
    elsewhere = [v.protocol for v in others if word in v.flags]
    if elsewhere:
        return (f'"{word}" is a flag of protocol {", ".join(elsewhere)}, but this rule applies '
                f"only to {names}")
    flags = sorted(set().union(*(v.flags for v in own)))
    return (f'unknown flag "{word}"{_did_you_mean(word, flags)}; {names} flags: '
            f"{', '.join(flags)}; see `{LISTING_COMMAND}`")


def _names(vocabularies: list[CommandVocabulary]) -> str:
    return "/".join(v.protocol for v in vocabularies)


def _likeness(word: str, candidate: str) -> float:
    return difflib.SequenceMatcher(None, word, candidate).ratio()


def _by_likeness(word: str, candidates: Iterable[str]) -> list[str]:
    return sorted(candidates, key=lambda c: (-_likeness(word, c), c))


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=3, cutoff=0.6)
    if not close:
        return ""
    # Only the near-best: "selct" suggests "select", not also "set" and "select_into".
    best = _likeness(word, close[0])
    close = [c for c in close if _likeness(word, c) >= best - 0.05]
    quoted = [f'"{c}"' for c in close]
    options = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f" (did you mean {options}?)"


def format_vocabulary(vocabularies: Mapping[str, CommandVocabulary], width: int = 100) -> str:
    """The listing ``wardgate config check --vocabulary`` prints: every word a rule may name."""

    def block(title: str, words: Iterable[str]) -> list[str]:
        items = list(words) if words is CATEGORIES else sorted(words)
        wrapped = textwrap.wrap(" ".join(items), width=width - 2, break_on_hyphens=False)
        return [f"{title} ({len(items)}):", *("  " + line for line in wrapped)]

    lines = ["Words a [[rules]] entry may name (sql = [...] takes categories and kinds,",
             "flags = [...] takes flags).", ""]
    lines += block("categories, for every protocol", CATEGORIES)
    if not vocabularies:
        lines += ["", "No installed connector declares its kinds and flags."]
    for protocol, vocabulary in sorted(vocabularies.items()):
        lines += ["", *block(f"{protocol} kinds", vocabulary.kinds)]
        lines += block(f"{protocol} flags", vocabulary.flags)
    return "\n".join(lines)
