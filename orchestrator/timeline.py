"""A picture of one run: a self-contained HTML page with an SVG timeline (no script, no network).

One lane per agent instance. LLM calls are bars (from ``llm.called``: the call ended at the
event's time and took ``seconds``); draft versions and review decisions are marks; handoffs are
arrows from the agent that published them to the agent that acted next on the same section;
restarts, failures and dead letters are drawn in red. Everything is read from the run's typed
events (:func:`protocol.events.parse_payload`), the dead letters and the supervisor's restarts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from pydantic import ValidationError

from agentmem.memory import AgentEvent, DeadLetter
from agentmem.orchestrator.supervisor import Restart
from agentmem.protocol import EventType, parse_payload
from agentmem.protocol.events import (
    AgentFailed,
    EventPayload,
    LLMCalled,
    ProtocolError,
    RunPlanned,
    SectionApproved,
    SectionAssigned,
    SectionDrafted,
    SectionRevisionRequested,
)

LEFT, RIGHT, TOP, LANE, AXIS = 150, 30, 40, 56, 30
WIDTH = 1200
DEAD_LETTERS = "dead letters"
TASK_COLOURS = {
    "plan": "#8e6cc9",
    "extract": "#4a90c2",
    "write": "#3f9d6b",
    "review": "#c9873a",
}
_ROLE_ORDER = {"orchestrator": 0, "research": 1, "writer": 2, "review": 3}


@dataclass(frozen=True, slots=True)
class _Typed:
    event: AgentEvent
    payload: EventPayload


class _Scale:
    def __init__(self, start: datetime, end: datetime) -> None:
        self.start = start
        self.span = max((end - start).total_seconds(), 0.001)

    def x(self, at: datetime) -> float:
        seconds = (at - self.start).total_seconds()
        return LEFT + max(0.0, seconds) / self.span * (WIDTH - LEFT - RIGHT)

    def width(self, seconds: float) -> float:
        return seconds / self.span * (WIDTH - LEFT - RIGHT)


def lanes(events: Sequence[AgentEvent], restarts: Sequence[Restart] = ()) -> list[str]:
    """The agent instances, orchestrator first, then research, writers, review."""
    names = {e.agent_id for e in events} | {r.agent for r in restarts}

    def order(name: str) -> tuple[int, str, int]:
        role, _, number = name.rpartition("-")
        role = role or name
        return (_ROLE_ORDER.get(role, 4), role, int(number) if number.isdigit() else 0)

    return sorted(names, key=order)


def timeline_svg(
    events: Sequence[AgentEvent],
    dead_letters: Sequence[DeadLetter] = (),
    restarts: Sequence[Restart] = (),
) -> str:
    """The run as an SVG element (to embed in a page)."""
    typed = [_Typed(e, p) for e in events if (p := _payload(e)) is not None]
    names = lanes(events, restarts)
    if dead_letters:
        names.append(DEAD_LETTERS)
    if not typed or not names:
        return (
            '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="40"><text x="10" '
            'y="25">No events yet.</text></svg>'
        )
    times = [t.event.timestamp for t in typed] + [r.at for r in restarts]
    times += [d.failed_at for d in dead_letters]
    llm_starts = [
        t.event.timestamp.timestamp() - t.payload.seconds
        for t in typed
        if isinstance(t.payload, LLMCalled)
    ]
    start = min(times)
    if llm_starts and min(llm_starts) < start.timestamp():
        start = datetime.fromtimestamp(min(llm_starts), tz=start.tzinfo)
    scale = _Scale(start, max(times))
    lane_y = {name: TOP + i * LANE + LANE / 2 for i, name in enumerate(names)}
    height = TOP + len(names) * LANE + AXIS
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" '
        'font-size="12">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#555"/></marker></defs>',
    ]
    for i, name in enumerate(names):
        top = TOP + i * LANE
        fill = "#f6f6f6" if i % 2 == 0 else "#ffffff"
        parts.append(f'<rect x="0" y="{top}" width="{WIDTH}" height="{LANE}" fill="{fill}"/>')
        colour = "#b00020" if name == DEAD_LETTERS else "#222"
        parts.append(
            f'<text class="lane" x="8" y="{top + LANE / 2 + 4}" fill="{colour}">'
            f"{escape(name)}</text>"
        )
    parts += _axis(scale, height)
    parts += _llm_bars(typed, scale, lane_y)
    parts += _handoffs(typed, scale, lane_y)
    parts += _marks(typed, scale, lane_y)
    for restart in restarts:
        x, y = scale.x(restart.at), lane_y.get(restart.agent, float(TOP))
        parts.append(
            f'<g class="restart"><title>{escape(restart.agent)} exited with code '
            f"{restart.exit_code} and was restarted at {restart.at:%H:%M:%S.%f}</title>"
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y - LANE / 2 + 2}" y2="{y + LANE / 2 - 2}" '
            'stroke="#b00020" stroke-width="3"/>'
            f'<text x="{x + 4:.1f}" y="{y - 14}" fill="#b00020">restart</text></g>'
        )
    for letter in dead_letters:
        x, y = scale.x(letter.failed_at), lane_y[DEAD_LETTERS]
        parts.append(
            f'<g class="dead-letter"><title>dead letter {escape(letter.dead_letter_id)} '
            f"(group {escape(letter.group)}): {escape(_clip(letter.reason, 300))}</title>"
            f'<path d="M{x - 6:.1f},{y - 6} l12,12 m0,-12 l-12,12" stroke="#b00020" '
            'stroke-width="3"/></g>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


LEGEND_STYLE = """
.legend span { margin-right: 1.2em; white-space: nowrap; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px;
  vertical-align: middle; }
"""


def legend_html() -> str:
    """What the timeline's marks mean, as a paragraph (styled by :data:`LEGEND_STYLE`); the
    report's timeline page and the web view's run page show the same one."""
    tasks = "".join(
        f'<span><i style="background:{colour}"></i>LLM call: {task}</span>'
        for task, colour in TASK_COLOURS.items()
    )
    return (
        f'<p class="legend">{tasks}<span><i style="background:#3f6fb5"></i>draft version</span>'
        '<span><i style="background:#2e8b57"></i>approved</span>'
        '<span><i style="background:#d98c00"></i>revision requested</span>'
        '<span><i style="background:#b00020"></i>failure, restart, dead letter</span>'
        "<span>→ handoff</span></p>"
    )


def timeline_html(
    run_id: str,
    topic: str,
    events: Sequence[AgentEvent],
    dead_letters: Sequence[DeadLetter] = (),
    restarts: Sequence[Restart] = (),
) -> str:
    """A whole page: title, legend and the timeline; opens offline in any browser."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Timeline of {escape(run_id)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
{LEGEND_STYLE}
svg.timeline {{ max-width: 100%; height: auto; border: 1px solid #ddd; }}
</style></head><body>
<h1>Timeline of run {escape(run_id)}</h1>
<p>{escape(topic)}</p>
{legend_html()}
{timeline_svg(events, dead_letters, restarts)}
<p>Hover over a mark for its details.</p>
</body></html>
"""


def _payload(event: AgentEvent) -> EventPayload | None:
    try:
        return parse_payload(event)
    except (ProtocolError, ValidationError):
        return None


def _axis(scale: _Scale, height: int) -> list[str]:
    y = height - AXIS + 14
    step = _nice_step(scale.span)
    parts = []
    tick = 0.0
    while tick <= scale.span + 1e-9:
        x = LEFT + scale.width(tick)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{height - AXIS}" stroke="#e0e0e0"/>'
            f'<text x="{x:.1f}" y="{y}" text-anchor="middle" fill="#666">{tick:g} s</text>'
        )
        tick += step
    return parts


def _nice_step(span: float) -> float:
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if span / step <= 12:
            return float(step)
    return span / 10


def _llm_bars(typed: list[_Typed], scale: _Scale, lane_y: dict[str, float]) -> list[str]:
    parts = []
    for t in typed:
        if not isinstance(t.payload, LLMCalled):
            continue
        call, y = t.payload, lane_y[t.event.agent_id]
        end = scale.x(t.event.timestamp)
        width = max(scale.width(call.seconds), 2.0)
        colour = TASK_COLOURS.get(call.task, "#888") if call.ok else "#b00020"
        outcome = "" if call.ok else ", failed"
        parts.append(
            f'<rect class="llm" x="{end - width:.1f}" y="{y + 6}" width="{width:.1f}" height="10" '
            f'fill="{colour}" opacity="0.8"><title>{escape(call.task)} on {escape(call.model)}: '
            f"{call.seconds:.3f} s{outcome}</title></rect>"
        )
    return parts


def _section_of(payload: EventPayload) -> str | None:
    match payload:
        case SectionAssigned(section=section):
            return section.section_id
        case SectionDrafted() | SectionRevisionRequested() | SectionApproved():
            return payload.section_id
        case _:
            return None


def _handoffs(typed: list[_Typed], scale: _Scale, lane_y: dict[str, float]) -> list[str]:
    """An arrow for each change of hands: run request to plan, then along each section."""
    parts = []
    last: dict[str, _Typed] = {}
    for t in typed:
        run_level = t.event.event_type == EventType.RUN_REQUESTED or isinstance(
            t.payload, RunPlanned
        )
        key = "run" if run_level else _section_of(t.payload)
        if key is None:
            continue
        before = last.get(key)
        if before is not None and before.event.agent_id != t.event.agent_id:
            x1, y1 = scale.x(before.event.timestamp), lane_y[before.event.agent_id]
            x2, y2 = scale.x(t.event.timestamp), lane_y[t.event.agent_id]
            y1, y2 = (y1 + 8, y2 - 8) if y2 > y1 else (y1 - 8, y2 + 8)
            about = "" if key == "run" else f" ({escape(key)})"
            parts.append(
                f'<line class="handoff" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                'stroke="#555" stroke-width="1" marker-end="url(#arrow)">'
                f"<title>{escape(before.event.event_type)} from {escape(before.event.agent_id)} "
                f"taken up by {escape(t.event.agent_id)}{about}</title></line>"
            )
        last[key] = t
    return parts


def _marks(typed: list[_Typed], scale: _Scale, lane_y: dict[str, float]) -> list[str]:
    parts = []
    for t in typed:
        x, y = scale.x(t.event.timestamp), lane_y[t.event.agent_id]
        match t.payload:
            case SectionDrafted(section_id=section_id, version=version):
                parts.append(
                    f'<g class="draft"><title>{escape(section_id)} version {version}</title>'
                    f'<circle cx="{x:.1f}" cy="{y - 6}" r="5" fill="#3f6fb5"/>'
                    f'<text x="{x:.1f}" y="{y - 14}" text-anchor="middle" font-size="10">'
                    f"v{version}</text></g>"
                )
            case SectionRevisionRequested(section_id=section_id, version=version, comments=c):
                parts.append(_diamond(x, y, "#d98c00", f"{section_id} v{version}: revise", c))
            case SectionApproved(section_id=section_id, version=version):
                settled = "approved"
                colour = "#2e8b57"
                if t.event.event_type == EventType.SECTION_ROUND_LIMIT:
                    settled, colour = "accepted at the round limit", "#c9b400"
                parts.append(_diamond(x, y, colour, f"{section_id} v{version}: {settled}", []))
            case AgentFailed(step=step, error=error):
                parts.append(
                    f'<g class="failure"><title>{escape(t.event.agent_id)} failed at '
                    f"{escape(step)}: {escape(_clip(error, 300))}</title>"
                    f'<path d="M{x:.1f},{y - 14} l8,14 l-16,0 z" fill="#b00020"/></g>'
                )
            case _:
                pass
    return parts


def _diamond(x: float, y: float, colour: str, title: str, comments: list[str]) -> str:
    detail = "".join(f"\n- {escape(_clip(c, 200))}" for c in comments)
    return (
        f'<g class="review"><title>{escape(title)}{detail}</title>'
        f'<path d="M{x:.1f},{y - 12} l6,6 l-6,6 l-6,-6 z" fill="{colour}"/></g>'
    )


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[: limit - 1]}…"
