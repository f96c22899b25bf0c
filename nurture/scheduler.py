"""The scheduler: which enrollments are due, and what happens to each.

:func:`tick` runs on the store's thread (it is synchronous) and does one batch:

1. applies the given campaigns (a changed campaign becomes a new stored version;
   enrollments continue by step id),
2. reads up to ``limit`` active enrollments due at ``now``, oldest first, through the
   ``enrollments_due (state, next_at)`` index,
3. decides for each, in this order: **exits** (contact unsubscribed or bounced, address
   suppressed, a task outcome listed in the campaign's ``exit``), the **send window** in the
   contact's time zone (the campaign's when the contact has none; a closed window moves
   ``next_at`` to the next opening, in local wall-clock time so DST is handled), then
   **conditions** (``unless`` / ``only_if`` on human clicks in this campaign) → skip or queue,
4. writes all decisions in one transaction.

A queued step leaves the enrollment with ``next_at`` NULL until the sender delivers it
(``mark_sent`` sets ``next_at = sent_at + next_wait``). Queueing or skipping the last step
marks the enrollment ``completed`` at once: nothing more is left to schedule.

:func:`simulate` runs the same tick on a throwaway in-memory store on a simulated clock.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from nurture.calendars import BusinessCalendar, Closure, calendar_for, country_of_zone
from nurture.countries import country_code
from nurture.errors import CampaignError, NotFound
from nurture.models import Campaign, Condition, Contact, FollowUpRule, Rep
from nurture.pacing import pace
from nurture.store import Store
from nurture.store.contacts import ContactRow, email_key
from nurture.store.enrollments import Advance, DueEnrollment, EnrollResult, campaign_hash, remap_step
from nurture.timeutil import format_duration, parse_duration, zone

__all__ = ["Advance", "PlanChange", "SimClick", "TickResult", "Timeline", "TimelineEntry", "enroll",
           "parse_click", "plan_change", "simulate", "tick"]


#: How long an enrollment waits when this process's copy of its campaign lacks its step.
STALE_RETRY = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one tick did. ``completed`` counts enrollments that finished in this tick
    (including those whose last step was just queued). ``decisions`` is filled only
    when the tick was asked to ``explain``."""

    queued: int = 0
    skipped: int = 0
    exited: int = 0
    completed: int = 0
    deferred: int = 0
    decisions: tuple[Advance, ...] = ()


def tick(store: Store, campaigns: Mapping[str, Campaign], *, now: datetime, limit: int = 10_000,
         explain: bool = False, reps: Sequence[Rep] = (), closures: tuple[Closure, ...] = ()) -> TickResult:
    """Queue, skip, defer or end every enrollment due at ``now`` (at most ``limit``).

    ``closures`` (config.yaml's) close days for every campaign's mail; with ``reps``, the
    steps of ``pace: reps`` campaigns are held while the reps are full (:mod:`nurture.pacing`)."""
    with store.transaction():
        for campaign in campaigns.values():
            store.save_campaign(campaign, source=campaign_source(campaign), now=now, reapply=False)
        due = store.due_enrollments(campaign_ids=campaigns.keys(), now=now, limit=limit)
        conditional = [d.id for d in due if _has_condition(campaigns[d.campaign_id], d.next_step)]
        clicks = store.human_clicks(conditional) if conditional else {}
        advances = [decide(d, campaigns[d.campaign_id], clicks.get(d.id, ()), now=now, closures=closures)
                    for d in due]
        advances, _ = pace(store, campaigns, reps, advances, now=now)
        store.apply_advances(advances, now=now)
    counts = {"queue": 0, "skip": 0, "exit": 0, "complete": 0, "defer": 0}
    completed = 0
    for a in advances:
        counts[a.action] += 1
        if a.action == "complete" or (a.action in ("queue", "skip") and a.next_step is None):
            completed += 1
    return TickResult(queued=counts["queue"], skipped=counts["skip"], exited=counts["exit"],
                      completed=completed, deferred=counts["defer"],
                      decisions=tuple(advances) if explain else ())


def campaign_source(campaign: Campaign) -> str | None:
    return getattr(campaign, "source", None) or None


def decide(d: DueEnrollment, campaign: Campaign, clicks: Sequence[tuple[str, str]], *, now: datetime,
           closures: tuple[Closure, ...] = ()) -> Advance:
    """The decision for one due enrollment (pure: no I/O)."""
    advance = functools.partial(Advance, enrollment_id=d.id, campaign_id=d.campaign_id, contact_id=d.contact_id)
    reason = exit_reason(d, campaign)
    if reason:
        return advance("exit", reason=reason)
    if d.next_step is None:
        return advance("complete")
    try:
        step = campaign.step(d.next_step)
    except KeyError:
        # This process holds an older copy of the campaign than the one applied (see
        # save_campaign): leave the step to a process that knows it.
        return advance("defer", step_id=d.next_step, next_at=now + STALE_RETRY,
                       reason="step unknown to this copy of the campaign")
    tz = contact_zone(d.timezone, campaign.timezone)
    calendar = mail_calendar(campaign, country=d.country, timezone=d.timezone, closures=closures)
    opens = campaign.send_window.next_open(now, tz, calendar)
    if opens > now:
        plain = campaign.send_window.next_open(now, tz)
        closed = calendar.closed(plain.astimezone(tz).date()) if plain < opens else None
        return advance("defer", step_id=step.id, next_at=opens,
                       reason=f"holiday: {closed}" if closed else "outside the send window")
    after = campaign.next_step(step.id)
    skip = skip_reason(step.unless, step.only_if, clicks)
    if skip:
        return advance("skip", step_id=step.id, due_at=now, reason=skip,
                       next_step=after.id if after else None,
                       next_at=now + after.wait if after else None)
    return advance("queue", step_id=step.id, due_at=min(d.next_at, now),
                   next_step=after.id if after else None,
                   next_wait=after.wait.total_seconds() if after else None)


def exit_reason(d: DueEnrollment, campaign: Campaign) -> str | None:
    """Why this enrollment must end now, or None. Unsubscribed, bounced and suppressed
    addresses always exit, whatever the campaign's ``exit`` list says."""
    if d.contact_status in ("unsubscribed", "bounced"):
        return d.contact_status
    if d.suppressed:
        return "suppressed"
    for ex in campaign.exits:
        if ex.kind == "outcome" and ex.value in d.outcomes:
            return f"outcome: {ex.value}"
    return None


def skip_reason(unless: Condition | None, only_if: Condition | None,
                clicks: Sequence[tuple[str, str]]) -> str | None:
    """Why a step is skipped given the enrollment's human clicks (step id, link name), or None."""
    if unless is not None and matches(unless, clicks):
        return f"unless: clicked {describe(unless)}"
    if only_if is not None and not matches(only_if, clicks):
        return f"only_if: no click on {describe(only_if)}"
    return None


def matches(cond: Condition, clicks: Sequence[tuple[str, str]]) -> bool:
    return any((cond.step is None or step == cond.step) and (cond.clicked == "any" or name == cond.clicked)
               for step, name in clicks)


def describe(cond: Condition) -> str:
    what = "any link" if cond.clicked == "any" else cond.clicked
    return f"{what} in {cond.step}" if cond.step else what


def mail_calendar(campaign: Campaign, *, country: str, timezone: str | None,
                  closures: tuple[Closure, ...] = ()) -> BusinessCalendar:
    """The days a contact gets no mail: the public holidays of their country (as imported,
    else their time zone's; else the campaign's ``calendar:``, else its time zone's) and the
    closures of the campaign and of config.yaml. ``calendar: none`` switches holidays off."""
    return _mail_calendar(campaign.calendar, campaign.timezone, (*closures, *campaign.closures), country, timezone)


@functools.lru_cache(maxsize=4096)
def _mail_calendar(own: str | None, own_zone: str, closures: tuple[Closure, ...], country: str,
                   timezone: str | None) -> BusinessCalendar:
    if own == "none":
        return calendar_for("none", closures=closures)
    code = country_code(country) if country else None
    if code is None or len(code) != 2:
        code = country_of_zone(timezone) or own or country_of_zone(own_zone)
    return calendar_for(code, closures=closures)


@functools.lru_cache(maxsize=1024)
def contact_zone(name: str | None, fallback: str) -> ZoneInfo:
    """The contact's time zone; the campaign's when unknown or unusable."""
    if name:
        try:
            return zone(name)
        except ValueError:
            pass
    return zone(fallback)


def _has_condition(campaign: Campaign, step_id: str | None) -> bool:
    if step_id is None:
        return False
    try:
        step = campaign.step(step_id)
    except KeyError:
        return False
    return step.unless is not None or step.only_if is not None


# -- enrollment ------------------------------------------------------------------------------

def enroll(store: Store, campaign: Campaign, *, now: datetime, all_contacts: bool = False,
           where: tuple[str, str] | None = None, email_keys: Sequence[str] | None = None,
           source: str | None = None) -> EnrollResult:
    """Apply the campaign, then enroll the chosen contacts (idempotent; skips suppressed)."""
    if not campaign.steps:
        raise CampaignError("has no steps to enroll anyone in", file=campaign.path, field="steps")
    version = store.save_campaign(campaign, source=source or campaign_source(campaign), now=now)
    first = campaign.steps[0]
    return store.enroll_contacts(campaign_id=campaign.id, first_step=first.id, first_at=now + first.wait,
                                 version=version, now=now, all_contacts=all_contacts, where=where,
                                 email_keys=email_keys)


# -- plan ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PlanChange:
    """What applying a changed campaign does to running enrollments at one step."""

    step: str | None          # where they wait now (None: last send in flight, nothing after)
    count: int
    in_flight: int            # of ``count``, those whose previous send is still on its way
    target: str | None        # where they go (== step: continue); None: completed
    removed: bool


@dataclass(frozen=True, slots=True)
class Plan:
    campaign_id: str
    stored_version: int | None
    changed: bool
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changes: tuple[PlanChange, ...]


def plan_change(store: Store, campaign: Campaign) -> Plan:
    """Compare ``campaign`` (e.g. the YAML on disk) with the stored version, without applying it."""
    stored = store.get_stored_campaign(campaign.id)
    new = [s.id for s in campaign.steps]
    if stored is None:
        return Plan(campaign.id, None, True, tuple(new), (), ())
    old = list(stored.steps)
    changed = stored.content_hash != campaign_hash(campaign)
    groups: dict[str | None, list[int]] = {}
    for step, in_flight, n in store.step_positions(campaign.id):
        g = groups.setdefault(step, [0, 0])
        g[0] += n
        g[1] += n if in_flight else 0
    changes = tuple(
        PlanChange(step=step, count=n, in_flight=f,
                   target=remap_step(step, old, new) if step is not None else None,
                   removed=step is not None and step not in new)
        for step, (n, f) in sorted(groups.items(), key=lambda kv: _order(kv[0], old)))
    return Plan(campaign.id, stored.version, changed, tuple(s for s in new if s not in old),
                tuple(s for s in old if s not in new), changes)


def _order(step: str | None, old: list[str]) -> int:
    return old.index(step) if step in old else len(old)


# -- simulate --------------------------------------------------------------------------------

_CLICK = re.compile(r"^\s*([^:@\s]+)\s*:\s*([^@\s]+)\s*(?:@\s*\+?\s*(.+?))?\s*$")


@dataclass(frozen=True, slots=True)
class SimClick:
    """``--click STEP:LINK@+2h``: a human click on LINK, this long after STEP went out."""

    step: str
    link: str
    after: timedelta = timedelta(hours=1)


def parse_click(text: str) -> SimClick:
    """Parse ``case-study:pricing@+2h`` (the ``@+…`` part defaults to one hour)."""
    m = _CLICK.match(text)
    if not m:
        raise ValueError(f'"{text}" is not a click (try case-study:pricing@+2h)')
    after = parse_duration(m.group(3)) if m.group(3) else timedelta(hours=1)
    return SimClick(step=m.group(1), link=m.group(2), after=after)


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: datetime
    kind: str                 # sent | skipped | deferred | click | task | exited | completed
    step: str | None
    text: str
    due: datetime | None = None   # a task's due time


@dataclass(frozen=True, slots=True)
class Timeline:
    campaign_id: str
    contact: Contact
    timezone: ZoneInfo
    entries: tuple[TimelineEntry, ...]


RuleFinder = Callable[..., "FollowUpRule | None"]


def simulate(campaign: Campaign, *, contact: Contact, now: datetime, clicks: Sequence[SimClick] = (),
             rule_for: RuleFinder | None = None, max_ticks: int = 500,
             closures: tuple[Closure, ...] = ()) -> Timeline:
    """Play ``campaign`` for one contact from ``now`` on a throwaway in-memory store with the
    real scheduler; the sender is assumed to deliver each queued step at once.

    ``rule_for(campaign, link=, step=)`` picks the follow-up rule a click raises a task by
    (default :func:`follow_up_rule`). ``closures`` are config.yaml's; a step that falls on a
    public holiday of the contact's country or a closure shows as deferred, naming it."""
    for c in clicks:
        try:
            campaign.step(c.step)
        except KeyError:
            raise NotFound(f'--click {c.step}:{c.link}: campaign "{campaign.id}" has no step "{c.step}" '
                           f'(steps: {", ".join(s.id for s in campaign.steps)})') from None
    store = Store(":memory:")
    try:
        return _play(store, campaign, contact, now, clicks, max_ticks, rule_for or follow_up_rule, closures)
    finally:
        store.close()


def _play(store: Store, campaign: Campaign, contact: Contact, now: datetime, clicks: Sequence[SimClick],
          max_ticks: int, rule_for: RuleFinder, closures: tuple[Closure, ...]) -> Timeline:
    fields = {k: str(getattr(contact, k) or "") for k in
              ("first_name", "last_name", "company", "industry", "phone", "timezone", "owner", "territory",
               "country")}
    store.upsert_contacts([ContactRow(contact.email, fields, dict(contact.attributes))], now=now)
    stored = store.get_contact_by_email(contact.email)
    if stored is None:  # the upsert just above cannot have lost it
        raise NotFound(f"no contact {contact.email}")
    cid = stored.id
    enroll(store, campaign, now=now, email_keys=[email_key(contact.email)])
    if contact.status != "active":  # enrolled anyway, so the timeline shows the exit and why
        store.set_contact_status(cid, contact.status, now=now)
    tz = contact_zone(contact.timezone, campaign.timezone)
    entries: list[TimelineEntry] = []
    pending: list[tuple[datetime, int, SimClick]] = []  # (when, send id, click)
    t = now
    for _ in range(max_ticks):
        for when, send_id, c in sorted(p for p in pending if p[0] <= t):
            store.click_simulated(send_id, link=c.link, at=when)
            pending.remove((when, send_id, c))
        result = tick(store, {campaign.id: campaign}, now=t, explain=True, closures=closures)
        for a in result.decisions:
            entries.extend(_describe(store, campaign, a, t, tz, clicks, pending, rule_for))
        enr = store.get_enrollment(campaign.id, cid)
        if enr.state != "active" or enr.next_at is None:
            break
        t = enr.next_at
    entries.sort(key=lambda e: e.at)
    return Timeline(campaign_id=campaign.id, contact=contact, timezone=tz, entries=tuple(entries))


def _describe(store: Store, campaign: Campaign, a: Advance, t: datetime, tz: ZoneInfo,
              clicks: Sequence[SimClick], pending: list[tuple[datetime, int, SimClick]],
              rule_for: RuleFinder) -> list[TimelineEntry]:
    out: list[TimelineEntry] = []
    if a.action == "queue" and a.step_id is not None:  # a queue decision always names its step
        send = next(s for s in store.enrollment_sends(a.enrollment_id) if s.step_id == a.step_id)
        store.deliver_simulated(send.id, now=t)
        out.append(TimelineEntry(t, "sent", a.step_id, campaign.step(a.step_id).subject))
        for c in clicks:
            if c.step == a.step_id:
                pending.append((t + c.after, send.id, c))
                out.extend(_click_entries(campaign, c, t + c.after, rule_for))
    elif a.action == "skip":
        out.append(TimelineEntry(t, "skipped", a.step_id, a.reason or ""))
    elif a.action == "defer":
        local = a.next_at.astimezone(tz) if a.next_at else None
        out.append(TimelineEntry(t, "deferred", a.step_id, f"{a.reason}; waits until {local:%a %d %b %H:%M %Z}"))
    elif a.action == "exit":
        out.append(TimelineEntry(t, "exited", None, a.reason or ""))
    if a.action == "complete" or (a.action in ("queue", "skip") and a.next_step is None):
        out.append(TimelineEntry(t, "completed", None, "no steps left"))
    return out


def _click_entries(campaign: Campaign, c: SimClick, at: datetime, rule_for: RuleFinder) -> list[TimelineEntry]:
    link = "a link" if c.link == "any" else c.link
    out = [TimelineEntry(at, "click", c.step, f"clicks {link} ({format_duration(c.after)} after {c.step} arrives)")]
    rule = rule_for(campaign, link=c.link, step=c.step)
    if rule is not None:
        out.append(TimelineEntry(at, "task", c.step,
                                 f"{rule.task} task, priority {rule.priority}, due within {format_duration(rule.due)}",
                                 due=at + rule.due))
    return out


def follow_up_rule(campaign: Campaign, *, step: str, link: str) -> FollowUpRule | None:
    """The follow-up rule a human click on ``link`` in ``step`` raises a task by, as
    docs/reps.md defines it: the most specific match wins (link and step, then link, then
    step, then ``any``), file order breaks ties. ``nurture simulate`` passes
    ``nurture.rules.match_rule`` itself; this is the same rule for library callers."""
    best: FollowUpRule | None = None
    for rule in campaign.follow_up:
        if matches(rule.when, [(step, link)]) and (best is None or _rank(rule.when) > _rank(best.when)):
            best = rule
    return best


def _rank(cond: Condition) -> int:
    return (2 if cond.clicked != "any" else 0) + (1 if cond.step else 0)
