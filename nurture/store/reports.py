"""Store: read-only figures for reports, the demo's live view and its clock."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from nurture.store.base import dt
from nurture.store.inbound import InboundMixin

#: How a permanent failure counts: a hard bounce (the mailbox does not exist) or not.
_BOUNCE = ("(error_enhanced LIKE '5.1.%' OR (error_enhanced IS NULL AND error_code IN (550, 551, 553)))")


class ReportsMixin(InboundMixin):
    """Aggregates over sends, clicks and tasks (and inbound items, through its base). Nothing here
    writes."""

    def funnel(self, campaign_id: str) -> dict[str, dict[str, int]]:
        """Per step of ``campaign_id``: sends by outcome, clicks by verdict, tasks and outcomes.

        Returns ``{step_id: {"queued", "sent", "failed", "bounced", "skipped", "suppressed",
        "human_clicks", "human_clickers", "scanner_clicks", "tasks", "connected", "qualified",
        "not_interested"}}``; tasks count against the step whose click raised them.
        """
        steps: dict[str, Counter[str]] = defaultdict(Counter)
        for r in self.query(
            f"""SELECT step_id, status, {_BOUNCE} AS bounce, COUNT(*) AS n FROM sends
                WHERE campaign_id = ? GROUP BY step_id, status, bounce""", (campaign_id,)):
            c = steps[r["step_id"]]
            status = r["status"]
            if status in ("sending", "retry"):
                status = "queued"
            if status == "failed" and r["bounce"]:
                c["bounced"] += r["n"]
            c[status] += r["n"]
        for r in self.query(
            """SELECT s.step_id, k.verdict, COUNT(*) AS n, COUNT(DISTINCT k.send_id) AS sends
               FROM clicks k JOIN sends s ON s.id = k.send_id
               WHERE s.campaign_id = ? AND k.kind = 'click' GROUP BY s.step_id, k.verdict""",
            (campaign_id,)):
            c = steps[r["step_id"]]
            c[f"{r['verdict']}_clicks"] += r["n"]
            if r["verdict"] == "human":
                c["human_clickers"] += r["sends"]
        for r in self.query(
            "SELECT status, outcome, context FROM tasks WHERE campaign_id = ?", (campaign_id,)):
            timeline = json.loads(r["context"] or "{}").get("timeline") or [{}]
            c = steps[timeline[0].get("step") or "?"]
            c["tasks"] += 1
            if r["outcome"]:
                c[r["outcome"]] += 1
        for step, figs in self.inbound_funnel(campaign_id).items():
            steps[step].update(figs)  # bounces after acceptance, complaints, replies, out-of-office
        return {step: dict(c) for step, c in steps.items()}

    def activity(self) -> dict[str, Any]:
        """Counts for a live view: sends by status, clicks by verdict, tasks by rep and status."""
        sends = {r["status"]: r["n"] for r in self.query(
            "SELECT status, COUNT(*) AS n FROM sends GROUP BY status")}
        clicks = {r["verdict"]: r["n"] for r in self.query(
            "SELECT verdict, COUNT(*) AS n FROM clicks WHERE kind = 'click' GROUP BY verdict")}
        tasks: dict[str, dict[str, int]] = defaultdict(dict)
        for r in self.query(
            "SELECT COALESCE(rep_id, '') AS rep, kind, status, COUNT(*) AS n FROM tasks "
            "GROUP BY rep, kind, status"):
            key = r["status"] if r["status"] != "open" else f"open_{r['kind']}"
            tasks[r["rep"]][key] = tasks[r["rep"]].get(key, 0) + r["n"]
        enrollments = {r["state"]: r["n"] for r in self.query(
            "SELECT state, COUNT(*) AS n FROM enrollments GROUP BY state")}
        return {"sends": sends, "clicks": clicks, "tasks": dict(tasks), "enrollments": enrollments}

    def next_activity_at(self) -> datetime | None:
        """The earliest time at which the scheduler or the sender has something to do."""
        row = self.query_one(
            """SELECT MIN(t) AS t FROM (
                 SELECT MIN(next_at) AS t FROM enrollments WHERE state = 'active' AND next_at IS NOT NULL
                 UNION ALL
                 SELECT MIN(next_attempt_at) FROM sends WHERE status IN ('queued', 'retry')
                 UNION ALL
                 SELECT MIN(lease_until) FROM sends WHERE status = 'sending')""")
        return dt(row["t"]) if row and row["t"] is not None else None

    def sending_in_flight(self) -> int:
        row = self.query_one("SELECT COUNT(*) AS n FROM sends WHERE status = 'sending'")
        return int(row["n"]) if row else 0

    def click_work_at(self, *, settle_seconds: float) -> datetime | None:
        """When the click pipeline next has work: the oldest pending click's end of its settle
        window, or the time of the oldest human click that follow-up has not handled yet."""
        row = self.query_one(
            """SELECT MIN(t) AS t FROM (
                 SELECT MIN(at) + ? AS t FROM clicks WHERE verdict = 'pending' AND kind = 'click'
                 UNION ALL
                 SELECT MIN(at) FROM clicks WHERE verdict = 'human' AND handled = 0 AND kind = 'click')""",
            (settle_seconds,))
        return dt(row["t"]) if row and row["t"] is not None else None
