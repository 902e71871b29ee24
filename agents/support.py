"""The support check: does each sentence of a draft say what the facts it cites say?

Citations are verbatim facts by construction (:mod:`agents.research`); what a citation does
not show is whether the sentence around it says what the fact says. A weak model writes
fluent sentences no source states, or loops ("a queue of Redis streams, which allows you to
use a Redis stream as a queue of Redis streams"), on a real citation. So review checks every
sentence against the facts its paragraph cites, deterministically, offline, the same for any
model. Each sentence gets one verdict, the first that applies:

- ``uncited``: its paragraph cites none of the section's facts;
- ``loop``: it repeats itself (a word 3-gram twice, or a content word three times);
- ``repeated``: it says again what an earlier sentence of the draft said (the same content
  words, or a shared word 5-gram);
- ``unsupported``: fewer than :data:`MIN_COVERAGE` of its content words occur in its cited
  facts (or the review model judged it unsupported; see :meth:`Support.judged`);
- ``supported``: otherwise.

A sentence that is a verbatim part of one of its cited facts is supported whatever its
n-grams: a source may repeat itself, and the stub's drafts and the extractive fallback are
made of such sentences, so they are always fully supported. A sentence without content words
("Yes.") claims nothing and is not counted. The figure a report gives (supported / counted
sentences) is this check's, so it is the same wherever it is read.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from agentmem.agents.llm_output import SectionDraft
from agentmem.agents.sentences import split
from agentmem.memory import Fact

MIN_COVERAGE = 0.6  # of a sentence's content words that its cited facts must contain
MAX_NAMED = 3  # sentences quoted per comment; the rest are counted
CLIP = 90  # characters of a sentence quoted in a comment

Verdict = Literal["supported", "unsupported", "uncited", "repeated", "loop"]

_WORD = re.compile(r"[a-z0-9][a-z0-9'-]*")
_STOPWORDS = """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers him his how i if in into is it its itself
    just may me might more most must my no nor not now of off on once only or other our ours out
    over own same she should so some such than that the their theirs them then there these they
    this those through to too under until up upon very was we were what when where which while
    who whom why will with would you your yours one two many much every well like use used uses
    using"""
_STOP = frozenset(_STOPWORDS.split())


class SentenceVerdict(BaseModel):
    """One sentence of a draft, where it is, and what the check found."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    paragraph: int  # 1-based
    text: str
    verdict: Verdict
    coverage: float  # share of its content words found in its cited facts
    by: Literal["check", "model"] = "check"


class Support(BaseModel):
    """The verdict on every counted sentence of one draft, in reading order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sentences: list[SentenceVerdict] = []

    @property
    def supported(self) -> int:
        return sum(s.verdict == "supported" for s in self.sentences)

    @property
    def total(self) -> int:
        return len(self.sentences)

    @property
    def grounded(self) -> bool:
        """Every counted sentence is supported (a draft with none counted is not)."""
        return self.total > 0 and self.supported == self.total

    def judged(self, numbers: Iterable[int], verbatim: Sequence[bool]) -> Support:
        """This support with the sentences the review model judged unsupported (1-based
        ``numbers``) marked so, except those verbatim in a cited fact: the model can add
        doubt, never overrule a quote."""
        flagged = set(numbers)
        return Support(
            sentences=[
                s.model_copy(update={"verdict": "unsupported", "by": "model"})
                if n in flagged and s.verdict == "supported" and not verbatim[n - 1]
                else s
                for n, s in enumerate(self.sentences, start=1)
            ]
        )

    def problems(self) -> list[str]:
        """Review comments naming every sentence that is not supported, one per kind."""
        comments = []
        for verdict, why in (
            ("uncited", "Sentences that cite no fact; cite the facts each one states"),
            ("loop", "Sentences that repeat themselves; say each thing once"),
            ("repeated", "Sentences that repeat an earlier one; drop them"),
            (
                "unsupported",
                "Sentences their cited facts do not support; state only what the facts say",
            ),
        ):
            found = [s for s in self.sentences if s.verdict == verdict]
            if not found:
                continue
            named = "; ".join(
                f'paragraph {s.paragraph}, "{_clip(s.text)}"' for s in found[:MAX_NAMED]
            )
            more = f" and {len(found) - MAX_NAMED} more" if len(found) > MAX_NAMED else ""
            comments.append(f"{why} ({len(found)}): {named}{more}.")
        if not self.sentences:
            comments.append("The draft has no sentence that states anything; state the facts.")
        return comments


def content_words(text: str) -> list[str]:
    """The words of ``text`` that carry meaning, lowercased, plurals folded, in order."""
    words = []
    for found in _WORD.findall(text.lower()):
        word = found.strip("'-").removesuffix("'s")
        if word in _STOP or (len(word) < 3 and not word.isdigit()):
            continue
        plural = len(word) > 4 and word.endswith("s") and not word.endswith("ss")
        words.append(word[:-1] if plural else word)
    return words


def check(draft: SectionDraft, facts: Iterable[Fact]) -> Support:
    """Each sentence of ``draft`` checked against the facts of its paragraph's citations."""
    known = {f.id: f.fact for f in facts}
    verdicts: list[SentenceVerdict] = []
    seen: list[tuple[set[str], set[tuple[str, ...]]]] = []
    for number, paragraph in enumerate(draft.paragraphs, start=1):
        cited = [known[c] for c in paragraph.citations if c in known]
        vocabulary = {w for text in cited for w in content_words(text)}
        for sentence in split(paragraph.text):
            words = content_words(sentence)
            if not words:
                continue
            unique = set(words)
            coverage = len(unique & vocabulary) / len(unique)
            grams = _grams(sentence, 5)
            verdict: Verdict
            if not cited:
                verdict = "uncited"
            elif is_verbatim(sentence, cited):
                verdict = "supported"
            elif _loops(sentence, words):
                verdict = "loop"
            elif any(unique == w or grams & g for w, g in seen):
                verdict = "repeated"
            elif coverage < MIN_COVERAGE:
                verdict = "unsupported"
            else:
                verdict = "supported"
            seen.append((unique, grams))
            verdicts.append(
                SentenceVerdict(
                    paragraph=number, text=sentence, verdict=verdict, coverage=round(coverage, 2)
                )
            )
    return Support(sentences=verdicts)


def verbatim_flags(draft: SectionDraft, facts: Iterable[Fact]) -> list[bool]:
    """For each counted sentence of ``draft`` (as :func:`check` counts them), whether it is a
    verbatim part of one of its paragraph's cited facts."""
    known = {f.id: f.fact for f in facts}
    flags = []
    for paragraph in draft.paragraphs:
        cited = [known[c] for c in paragraph.citations if c in known]
        flags += [is_verbatim(s, cited) for s in split(paragraph.text) if content_words(s)]
    return flags


def is_verbatim(sentence: str, facts: Iterable[str]) -> bool:
    """Whether ``sentence`` (final punctuation aside) is word for word part of a fact."""
    core = " ".join(sentence.split()).rstrip(".!?;:").strip()
    return bool(core) and any(core in " ".join(f.split()) for f in facts)


def _loops(sentence: str, words: list[str]) -> bool:
    """A word 3-gram said twice, or a content word said three times, in one sentence."""
    tokens = _WORD.findall(sentence.lower())
    trigrams = Counter(zip(tokens, tokens[1:], tokens[2:], strict=False))
    return any(n > 1 for n in trigrams.values()) or any(n > 2 for n in Counter(words).values())


def _grams(sentence: str, n: int) -> set[tuple[str, ...]]:
    tokens = _WORD.findall(sentence.lower())
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= CLIP else f"{text[: CLIP - 1]}…"
