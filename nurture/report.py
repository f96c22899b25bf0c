"""The campaign report: the funnel per step, as rows for the terminal and as an inline SVG
chart for the reps' app. Pure functions over :meth:`Store.funnel`'s figures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from html import escape

from nurture.models import Campaign

#: Columns of the funnel, in order: (key, label). "clicked" counts mails a person clicked;
#: "scanner" counts the mail-security scanner requests that were filtered out; "sent" counts
#: mails the SMTP server accepted; "reached" counts calls with the outcome "connected"; "bounced
#: later" counts hard bounces reported after the relay had accepted the mail; "away" counts
#: out-of-office replies (they pause, they raise no task).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("sent", "sent"),
    ("failed", "failed"),
    ("skipped", "skip"),
    ("human_clickers", "clicked"),
    ("scanner_clicks", "scanner"),
    ("async_bounces", "bounced later"),
    ("complaints", "complaints"),
    ("replies", "replies"),
    ("out_of_office", "away"),
    ("tasks", "tasks"),
    ("connected", "reached"),
    ("qualified", "qualified"),
)


@dataclass(frozen=True, slots=True)
class StepRow:
    step_id: str
    subject: str
    figures: Mapping[str, int]

    def get(self, key: str) -> int:
        return int(self.figures.get(key, 0))

    @property
    def attempted(self) -> int:
        """Mails that reached the SMTP server one way or the other."""
        return self.get("sent") + self.get("failed")

    @property
    def click_rate(self) -> float:
        """Share of delivered mails that a person (not a scanner) clicked."""
        return self.get("human_clickers") / self.get("sent") if self.get("sent") else 0.0

    @property
    def complaint_rate(self) -> float:
        """Complaints per delivered mail (Gmail and Yahoo block senders above 0.3 %)."""
        return self.get("complaints") / self.get("sent") if self.get("sent") else 0.0


def complaint_rate(total: Mapping[str, int]) -> float:
    """Complaints per delivered mail over the given totals."""
    return total.get("complaints", 0) / total["sent"] if total.get("sent") else 0.0


def rows(campaign: Campaign, funnel: Mapping[str, Mapping[str, int]]) -> list[StepRow]:
    """One row per step of ``campaign``, in order (steps nobody reached yet show zeros)."""
    out = [StepRow(step.id, step.subject, funnel.get(step.id, {})) for step in campaign.steps]
    known = {s.id for s in campaign.steps}
    out += [StepRow(step_id, "(step no longer in the campaign)", figs)
            for step_id, figs in funnel.items() if step_id not in known]
    return out


def totals(step_rows: list[StepRow]) -> dict[str, int]:
    keys = {k for r in step_rows for k in r.figures}
    return {k: sum(r.get(k) for r in step_rows) for k in keys}


def svg_chart(step_rows: list[StepRow], *, width: int = 640) -> str:
    """A grouped horizontal bar chart (delivered, clicked by people, tasks, qualified) per step.

    Plain inline SVG with a title and text labels, so it reads without JavaScript and is
    announced sensibly by screen readers.
    """
    series = (("sent", "delivered", "#94a3b8"), ("human_clickers", "clicked (people)", "#2563eb"),
              ("tasks", "tasks", "#f59e0b"), ("qualified", "qualified", "#16a34a"))
    label_w, bar_h, gap, group_gap, top = 170, 14, 3, 18, 30
    peak = max([r.get(k) for r in step_rows for k, _, _ in series] + [1])
    scale = (width - label_w - 60) / peak
    height = top + len(step_rows) * (len(series) * (bar_h + gap) + group_gap) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} {height}" '
             f'width="100%" aria-labelledby="funnel-title" class="funnel-chart">',
             '<title id="funnel-title">Funnel per step: delivered, clicked by people, tasks, qualified</title>']
    x = label_w
    for _key, label, color in series:  # legend
        parts.append(f'<rect x="{x}" y="6" width="10" height="10" fill="{color}"/>'
                     f'<text x="{x + 14}" y="15" font-size="11" fill="#334155">{escape(label)}</text>')
        x += 14 + 7 * len(label) + 18
    y = top
    for r in step_rows:
        parts.append(f'<text x="0" y="{y + bar_h}" font-size="12" font-weight="600" fill="#0f172a">'
                     f'{escape(r.step_id)}</text>')
        for key, label, color in series:
            value = r.get(key)
            w = max(1.0, value * scale) if value else 0
            parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}" rx="2">'
                         f'<title>{escape(r.step_id)}: {value} {escape(label)}</title></rect>'
                         f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 3}" font-size="11" '
                         f'fill="#334155">{value}</text>')
            y += bar_h + gap
        y += group_gap
    parts.append("</svg>")
    return "".join(parts)
