"""The support check: each sentence of a draft against the facts its paragraph cites."""

from __future__ import annotations

from datetime import UTC, datetime

from agentmem.agents.llm_output import SectionDraft
from agentmem.agents.support import check, verbatim_flags
from agentmem.memory import Fact

SET_NX = (
    "A single Redis server can implement a lock with one command: SET with the NX and PX "
    "options sets the key only if it does not exist and gives it an expiry in milliseconds."
)
STREAMS = (
    "Redis Streams are an append-only log data type that was introduced in Redis 5.0, "
    "released in October 2018."
)
FACTS = [
    Fact(i, t, "s", "research-1", datetime.now(UTC), {"source": "x.md", "quote": t})
    for i, t in ((1, SET_NX), (2, STREAMS))
]


def draft(*paragraphs: tuple[str, list[int]]) -> SectionDraft:
    return SectionDraft.model_validate(
        {"title": "T", "paragraphs": [{"text": t, "citations": c} for t, c in paragraphs]}
    )


def verdicts(*paragraphs: tuple[str, list[int]]) -> list[str]:
    return [s.verdict for s in check(draft(*paragraphs), FACTS).sentences]


def test_a_sentence_saying_what_its_cited_fact_says_is_supported() -> None:
    """Verbatim or restated with the fact's words, a sentence on its cited fact is supported."""
    support = check(
        draft(
            (STREAMS, [2]),
            ("Redis Streams, an append-only log type, came with Redis 5.0 in October 2018.", [2]),
        ),
        FACTS,
    )

    assert [s.verdict for s in support.sentences] == ["supported", "supported"]
    assert support.grounded
    assert (support.supported, support.total) == (2, 2)


def test_a_sentence_its_cited_facts_do_not_state_is_unsupported() -> None:
    """A fluent sentence on a real citation, whose words are not in the fact, is unsupported."""
    support = check(draft(("Redis is a multi-user database with strong consistency.", [1])), FACTS)

    assert [s.verdict for s in support.sentences] == ["unsupported"]
    assert not support.grounded
    assert "their cited facts do not support" in support.problems()[0]
    assert "multi-user database" in support.problems()[0]


def test_a_true_sentence_on_the_wrong_citation_is_unsupported() -> None:
    """Support is judged against the cited facts only, not the section's other facts."""
    assert verdicts((STREAMS, [1])) == ["unsupported"]


def test_sentences_of_a_paragraph_without_citations_are_uncited() -> None:
    """A paragraph citing no fact (or only ids that are not facts) makes its sentences uncited."""
    assert verdicts((STREAMS, []), (SET_NX, [99])) == ["uncited", "uncited"]


def test_looping_and_repeated_sentences_are_named() -> None:
    """A sentence that loops, or says again what an earlier one said, is not supported."""
    support = check(
        draft(
            (
                "It allows you to use a Redis stream as a queue of Redis streams, which allows "
                "you to use a Redis stream as a queue of Redis streams.",
                [2],
            ),
            (
                "Redis Streams came with Redis 5.0 in October 2018. In October 2018, Redis "
                "Streams came with Redis 5.0.",
                [2],
            ),
        ),
        FACTS,
    )

    assert [s.verdict for s in support.sentences] == ["loop", "supported", "repeated"]
    comments = " ".join(support.problems())
    assert "repeat themselves" in comments
    assert "repeat an earlier one" in comments


def test_the_review_model_can_add_doubt_but_not_overrule_a_quote() -> None:
    """Sentences the model flags become unsupported, except those verbatim in a cited fact."""
    written = draft((STREAMS, [2]), ("Redis Streams came with Redis 5.0 in October 2018.", [2]))
    support = check(written, FACTS).judged([1, 2], verbatim_flags(written, FACTS))

    assert [(s.verdict, s.by) for s in support.sentences] == [
        ("supported", "check"),
        ("unsupported", "model"),
    ]
