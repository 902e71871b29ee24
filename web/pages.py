"""Server-rendered HTML of the web view: the runs list and a run's page (no external assets).

Every value from the stores is escaped. The run page has one small script: it listens to the
run's server-sent events and, when something happens, fetches the page body again.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from html import escape
from urllib.parse import quote, urlencode

from agentmem.agents import groundedness
from agentmem.agents.llm_output import citation, citation_label
from agentmem.memory import RunEntry
from agentmem.orchestrator.timeline import LEGEND_STYLE, legend_html, timeline_svg
from agentmem.web.data import RunView, Version
from agentmem.web.guard import TOKEN_FIELD
from agentmem.web.markdown import to_html

RUN_STATES = ("running", "completed", "failed")

STYLE = (
    """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1260px; color: #222;
  padding: 0 1em; }
a { color: #1a5fb4; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: top; }
.state-approved, .state-completed { color: #2e7d32; font-weight: bold; }
.state-failed { color: #b00020; font-weight: bold; }
.state-running, .state-revising, .state-in-review { color: #a15c00; }
section.part { border: 1px solid #ddd; border-radius: 6px; padding: 0.5em 1em; margin: 1em 0; }
details { margin: 0.4em 0; }
pre.diff { background: #fafafa; padding: 0.5em; overflow-x: auto; white-space: pre-wrap; }
.add { color: #1b5e20; background: #e8f5e9; display: block; }
.del { color: #b71c1c; background: #ffebee; display: block; }
.comments li { color: #6d4c00; }
.failure { color: #b00020; }
.malformed { color: #a15c00; }
#live { color: #666; font-size: 0.9em; }
.timeline-wrap { overflow-x: auto; }
.filters a { margin-right: 0.8em; }
.filters a.on { font-weight: bold; color: #222; text-decoration: none; }
article.report { border: 1px solid #ddd; border-radius: 6px; padding: 0 1em; }
"""
    + LEGEND_STYLE
)


def layout(title: str, body: str, script: str = "") -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        f"</title><style>{STYLE}</style></head><body>{body}{script}</body></html>"
    )


@dataclass(frozen=True, slots=True)
class RunFilter:
    """What the run list keeps: runs in ``state``, of ``tenant`` (None: any)."""

    state: str | None = None
    tenant: str | None = None

    def query(self, state: str | None) -> str:
        """The query string of this filter with ``state`` instead of its own."""
        pairs = {"state": state, "tenant": self.tenant}
        kept = urlencode({k: v for k, v in pairs.items() if v})
        return f"?{kept}" if kept else ""


def runs_page(entries: list[RunEntry], shown: RunFilter | None = None) -> str:
    """The runs, newest first, each linking to its page; ``shown`` keeps those in a state or
    of a tenant. The list refreshes itself every two seconds while the page is shown."""
    shown = shown or RunFilter()
    query = escape(shown.query(shown.state))
    script = f"""<script>
setInterval(() => {{
  if (document.hidden) return;
  fetch("/runs/list{query}").then(r => r.ok ? r.text() : null).then(html => {{
    if (html !== null) document.getElementById("runs").innerHTML = html;
  }});
}}, 2000);
</script>"""
    links = "".join(
        f'<a href="/runs{escape(shown.query(s))}"{" class=on" if s == shown.state else ""}>'
        f"{s or 'all'}</a>"
        for s in (None, *RUN_STATES)
    )
    tenant = f" of tenant {escape(shown.tenant)}" if shown.tenant else ""
    body = (
        f'<h1>Runs{tenant}</h1><p class="filters">{links}</p>'
        f'<div id="runs">{runs_table(entries, shown)}</div>'
    )
    return layout("agentmem runs", body, script)


def runs_table(entries: list[RunEntry], kept: RunFilter | None = None) -> str:
    """The rows of the runs list (what its live refresh fetches)."""
    state = (kept or RunFilter()).state
    shown = [e for e in entries if state is None or e.state == state]
    rows = "".join(
        f'<tr><td><a href="/runs/{quote(e.run_id, safe="")}">{escape(e.run_id)}</a></td>'
        f"<td>{escape(e.topic)}</td>"
        f'<td class="state-{e.state}">{e.state}</td>'
        f"<td>{f'{e.approved}/{e.sections}' if e.sections else '-'}</td>"
        f"<td>{'-' if e.seconds is None else f'{e.seconds:.1f} s'}</td>"
        f"<td>{e.started_at:%Y-%m-%d %H:%M:%S} UTC</td></tr>"
        for e in shown
    )
    if shown:
        return (
            "<table><tr><th>run</th><th>topic</th><th>state</th><th>sections</th>"
            f"<th>duration</th><th>started</th></tr>{rows}</table>"
        )
    if state:
        return f"<p>No {state} runs.</p>"
    return "<p>No runs yet: start one with <code>agentmem run</code>.</p>"


def run_page(view: RunView, token: str = "") -> str:
    """The run's page: its body, refreshed while the run's stream has news; ``token`` is the
    server's, which its forms carry (:mod:`web.guard`)."""
    path = f"/runs/{quote(view.run_id, safe='')}"
    finished = view.state.report_path is not None or (
        view.entry is not None and view.entry.state != "running"
    )
    script = (
        ""
        if finished
        else f"""<script>
(() => {{
  let last = {view.last_event_id!r}, pending = null;
  const live = document.getElementById("live");
  const refresh = () => fetch("{path}/body").then(r => r.text()).then(html => {{
    document.getElementById("run-body").innerHTML = html;
  }});
  const source = new EventSource("{path}/stream?after=" + encodeURIComponent(last));
  source.onmessage = (message) => {{
    live.textContent = "live: " + message.data;
    clearTimeout(pending);
    pending = setTimeout(refresh, 300);
  }};
  source.addEventListener("done", () => {{ live.textContent = "run finished"; source.close();
    refresh(); }});
}})();
</script>"""
    )
    body = (
        f'<p><a href="/">all runs</a></p><h1>Run {escape(view.run_id)}</h1>'
        f'<p id="live">{"run finished" if finished else "live: waiting for events…"}</p>'
        f'<div id="run-body">{run_body(view, token)}</div>'
    )
    return layout(f"agentmem {view.run_id}", body, script)


def run_body(view: RunView, token: str = "") -> str:
    """Summary, timeline, sections with their versions, facts and dead letters."""
    return "".join(
        [
            _summary(view),
            '<h2>Timeline</h2><div class="timeline-wrap">',
            legend_html(),
            timeline_svg(view.events, view.dead_letters),
            "</div>",
            _report(view),
            _sections(view),
            _facts(view),
            _dead_letters(view, token),
        ]
    )


def _summary(view: RunView) -> str:
    state, entry = view.state, view.entry
    outcome = entry.state if entry else ("completed" if state.report_path else "running")
    settled = sum(s.state.settled for s in state.sections.values())
    parts = [
        f"<p><b>{escape(state.topic or (entry.topic if entry else ''))}</b></p>",
        f'<p>State: <span class="state-{outcome}">{outcome}</span>; {settled}/'
        f"{len(state.sections)} sections settled; {state.fact_count} facts; {state.events} "
        "events.</p>",
    ]
    if state.malformed:
        items = "".join(f"<li>{escape(m)}</li>" for m in state.malformed)
        parts.append(
            f'<div class="malformed"><b>Malformed events ({len(state.malformed)}), skipped: '
            f"their payload does not fit their type.</b><ul>{items}</ul></div>"
        )
    failures = list(state.failures)
    if entry is not None and entry.error and entry.error not in " ".join(failures):
        failures.append(entry.error)
    if failures:
        items = "".join(f"<li>{escape(f)}</li>" for f in failures)
        parts.append(f'<div class="failure"><b>Why the run failed:</b><ul>{items}</ul></div>')
    figures = _figures(view)
    if figures:
        supported = sum(f.supported for f in figures.values())
        total = sum(f.total for f in figures.values())
        parts.append(
            f'<p class="groundedness">Groundedness: {groundedness.phrase(supported, total)} '
            "supported by the facts they cite.</p>"
        )
    if state.report_path:
        parts.append(
            f'<p>Report: <a href="#report">below</a>, <a href="/runs/'
            f'{quote(view.run_id, safe="")}/report">on a page of its own</a> '
            f"(<code>{escape(state.report_path)}</code>)</p>"
        )
    return "".join(parts)


def _report(view: RunView) -> str:
    if view.report is None:
        return ""
    return (
        '<h2 id="report">Report</h2><details open><summary>The report as the run wrote it'
        f'</summary><article class="report">{to_html(view.report)}</article></details>'
    )


def report_page(view: RunView) -> str:
    """The run's report alone, rendered, with a link back to the run."""
    path = f"/runs/{quote(view.run_id, safe='')}"
    body = (
        f'<p><a href="{path}">run {escape(view.run_id)}</a></p>'
        f'<article class="report">{to_html(view.report or "")}</article>'
    )
    return layout(f"report of {view.run_id}", body)


def _figures(view: RunView) -> dict[str, groundedness.SectionFigure]:
    """The groundedness of each section's latest draft."""
    drafts = {s: versions[-1].draft for s, versions in view.versions.items() if versions}
    return {f.section_id: f for f in groundedness.section_figures(drafts, view.facts)}


def _sections(view: RunView) -> str:
    if not view.state.sections:
        return "<h2>Sections</h2><p>No sections planned yet.</p>"
    parts = ["<h2>Sections</h2>"]
    figures = _figures(view)
    for section_id, progress in view.state.sections.items():
        css = str(progress.state).replace(" ", "-")
        parts.append(
            f'<section class="part" id="section-{escape(section_id)}">'
            f"<h3>{escape(progress.plan.title)} "
            f'<small class="state-{css}">{escape(str(progress.state))}</small></h3>'
        )
        figure = figures.get(section_id)
        if figure is not None:
            how = (
                f" Written extractively from its facts, because {escape(figure.extractive)}."
                if figure.extractive
                else ""
            )
            parts.append(
                f'<p class="groundedness">{groundedness.phrase(figure.supported, figure.total)} '
                f"supported by the facts they cite.{how}</p>"
            )
        versions = view.versions.get(section_id, [])
        previous: Version | None = None
        for n, version in enumerate(versions):
            parts.append(_version(version, previous, open_=n == len(versions) - 1))
            previous = version
        if not versions:
            parts.append("<p>No draft yet.</p>")
        parts.append("</section>")
    return "".join(parts)


def _version(version: Version, previous: Version | None, *, open_: bool) -> str:
    doc, draft, review = version.document, version.draft, version.review
    paragraphs = "".join(
        f"<p>{escape(p.text)} "
        + "".join(f'<a href="#fact-{c}">{citation(c)}</a>' for c in p.citations)
        + "</p>"
        for p in draft.paragraphs
    )
    if review is None:
        verdict = "<p><i>waiting for review</i></p>"
    else:
        said = "approved" if review.approved else "revision requested"
        comments = "".join(f"<li>{escape(c)}</li>" for c in review.comments)
        verdict = f'<p>Review: <b>{said}</b></p><ul class="comments">{comments}</ul>'
    diff = ""
    if previous is not None:
        lines = difflib.unified_diff(
            previous.draft.to_markdown().splitlines(),
            draft.to_markdown().splitlines(),
            f"version {previous.document.version}",
            f"version {doc.version}",
            lineterm="",
        )
        rendered = "".join(
            f'<span class="add">{escape(line)}</span>'
            if line.startswith("+")
            else f'<span class="del">{escape(line)}</span>'
            if line.startswith("-")
            else f"{escape(line)}\n"
            for line in lines
        )
        diff = (
            f'<details><summary>What changed</summary><pre class="diff">{rendered}</pre></details>'
        )
    return (
        f'<details class="version"{" open" if open_ else ""}><summary>Version {doc.version} by '
        f"{escape(doc.agent_id)} at {doc.created_at:%H:%M:%S} (round {draft.round})</summary>"
        f"{paragraphs}{verdict}{diff}</details>"
    )


def _facts(view: RunView) -> str:
    rows = "".join(
        f'<tr id="fact-{f.id}"><td>{citation_label(f.id)}</td><td>{escape(f.category)}</td>'
        f"<td>{escape(str(f.metadata.get('source', '')))}</td><td>{escape(f.fact)}</td></tr>"
        for f in view.facts
    )
    return (
        f"<h2>Facts ({len(view.facts)})</h2><table><tr><th>id</th><th>section</th>"
        f"<th>source</th><th>fact (quoted from the source)</th></tr>{rows}</table>"
    )


def _dead_letters(view: RunView, token: str) -> str:
    if not view.dead_letters:
        return "<h2>Dead letters</h2><p>None: every handoff was handled.</p>"
    path = f"/runs/{quote(view.run_id, safe='')}/dead-letters"
    rows = "".join(
        f"<tr><td>{escape(d.dead_letter_id)}</td><td>{d.failed_at:%H:%M:%S}</td>"
        f"<td>{escape(d.group)}</td><td>{escape(d.reason[:300])}</td><td>"
        f'<form method="post" action="{path}/{quote(d.dead_letter_id, safe="")}/requeue" '
        "onsubmit=\"return confirm('Hand this entry to the agents again?')\">"
        '<input type="hidden" name="confirm" value="yes">'
        f'<input type="hidden" name="{TOKEN_FIELD}" value="{escape(token)}">'
        '<button type="submit">Requeue</button></form></td></tr>'
        for d in view.dead_letters
    )
    return (
        f"<h2>Dead letters ({len(view.dead_letters)})</h2><table><tr><th>id</th><th>when</th>"
        f"<th>group</th><th>reason</th><th></th></tr>{rows}</table>"
    )


def not_found(run_id: str) -> str:
    return layout(
        "unknown run",
        f'<h1>Unknown run</h1><p>No run {escape(run_id)!s} here. <a href="/">All runs</a></p>',
    )
