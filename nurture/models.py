"""Plain data: frozen dataclasses shared by every part of nurture.

Times are timezone-aware ``datetime`` in UTC unless a name says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal, TypeVar, get_args

from nurture.calendars import NO_CALENDAR, BusinessCalendar, Closure
from nurture.timeutil import Hours, Rate, Window

EMPTY: Mapping[str, Any] = MappingProxyType({})

# -- states: each a Literal alias, with its values as a tuple (in the alias's order) ------------

#: A row of the outbox: ``queued → sending → sent | retry | failed``, or set aside at claim
#: time as ``suppressed`` / ``skipped``.
SendStatus = Literal["queued", "sending", "sent", "retry", "failed", "skipped", "suppressed"]
#: A click's judgement: ``pending`` until the settle pass decides ``human`` or ``scanner``.
ClickVerdict = Literal["pending", "human", "scanner"]
#: What the tracker recorded: a followed link, the open pixel, or a GET of the unsubscribe page
#: (``unsubscribe``: evidence for the judge, never a click).
ClickKind = Literal["click", "open", "unsubscribe"]
TaskKind = Literal["call_now", "call", "email"]
#: Task priorities, most urgent first. Stored as integers (lower is more urgent).
Priority = Literal["urgent", "high", "normal", "low"]
TaskStatus = Literal["open", "done"]
Outcome = Literal["connected", "voicemail", "no_answer", "snoozed", "not_interested", "qualified",
                  "unreachable"]
#: ``erased`` once ``nurture contacts forget`` removed the person's data.
ContactStatus = Literal["active", "unsubscribed", "bounced", "erased"]
#: ``active`` (a next step is due), ``completed`` (nothing more to schedule) or ``exited``.
EnrollmentState = Literal["active", "completed", "exited"]

SEND_STATUSES: tuple[SendStatus, ...] = get_args(SendStatus)
VERDICTS: tuple[ClickVerdict, ...] = get_args(ClickVerdict)
CLICK_KINDS: tuple[ClickKind, ...] = get_args(ClickKind)
TASK_KINDS: tuple[TaskKind, ...] = get_args(TaskKind)
PRIORITIES: tuple[Priority, ...] = get_args(Priority)
TASK_STATUSES: tuple[TaskStatus, ...] = get_args(TaskStatus)
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
ENROLLMENT_STATES: tuple[EnrollmentState, ...] = get_args(EnrollmentState)
#: Outcomes that end the contact's enrollment in the task's campaign.
EXIT_OUTCOMES: frozenset[Outcome] = frozenset({"not_interested", "qualified"})

L = TypeVar("L", bound=str)


def one_of(value: str, values: tuple[L, ...]) -> L | None:
    """``value`` as a member of ``values`` (one of the tuples above, so typed as its Literal
    alias), or None when it is not one: ``one_of(text, OUTCOMES)`` is an ``Outcome | None``."""
    for v in values:
        if v == value:
            return v
    return None


@dataclass(frozen=True, slots=True)
class Condition:
    """``{clicked: pricing}`` or ``{clicked: any, step: case-study}``: a human click happened;
    ``{replied: true}`` (``replied=True``, optionally with ``step``): the contact replied."""

    clicked: str = "any"
    step: str | None = None
    replied: bool = False


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    subject: str
    template: str
    wait: timedelta
    text_template: str | None = None
    unless: Condition | None = None
    only_if: Condition | None = None
    line: int | None = None
    #: The inbox preview text (a template like the subject), or None.
    preheader: str | None = None


@dataclass(frozen=True, slots=True)
class FollowUpRule:
    """A human click matching ``when`` raises a task for a rep."""

    when: Condition
    task: TaskKind = "call"
    priority: Priority = "normal"
    due: timedelta = timedelta(days=1)
    note: str | None = None
    line: int | None = None
    #: Calls before the task ends ``unreachable`` (voicemail / no answer count as one each).
    attempts: int = 3
    #: The wait after each unanswered call: durations or ``next_day HH:MM`` (last repeats).
    retry: tuple[str, ...] = ("2h", "next_day 10:00")
    #: After the last attempt: ``{"step": id}`` or ``{"enroll": campaign id}``, or None.
    unreachable: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ScoreRule:
    when: Condition
    points: float


@dataclass(frozen=True, slots=True)
class Scoring:
    rules: tuple[ScoreRule, ...] = ()
    half_life: timedelta = timedelta(days=14)
    hot_threshold: float = 50.0


@dataclass(frozen=True, slots=True)
class Exit:
    """An exit condition: ``unsubscribed``, ``bounced``, ``replied`` (``value="company"``: a reply
    also stops the other contacts of the same company domain) or ``outcome`` (with ``value``)."""

    kind: str
    value: str | None = None


@dataclass(frozen=True, slots=True)
class Campaign:
    id: str
    name: str
    path: str
    timezone: str
    steps: tuple[Step, ...]
    send_window: Window = Window()
    sender: str | None = None
    reply_to: str | None = None
    rate: Rate | None = None
    follow_up: tuple[FollowUpRule, ...] = ()
    exits: tuple[Exit, ...] = ()
    scoring: Scoring = Scoring()
    #: ``out_of_office: {pause: 5d}``: how long an out-of-office without a return date pauses
    #: the contact here (None: ``inbound.ooo_pause``; zero: out-of-office never pauses).
    out_of_office_pause: timedelta | None = None
    samples: tuple[Mapping[str, Any], ...] = ()
    content_hash: str = ""
    #: Template variables a contact lacks fall back to these (``defaults:`` in the YAML).
    defaults: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    #: ``locale:``: a BCP 47 tag (``en``, ``ja``) choosing ``<html lang>``, the footer's words
    #: and the name order (nurture.i18n); ``footer:`` overrides the catalogue's texts.
    locale: str = "en"
    footer: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    #: ``calendar: JP``: the public holidays of contacts whose country is unknown (None: the
    #: campaign time zone's country; ``"none"``: no holidays at all).
    calendar: str | None = None
    #: ``closures:``: dates on which this campaign sends nothing (with config.yaml's).
    closures: tuple[Closure, ...] = ()
    #: ``pace: reps``: hold steps that raise call-now tasks while the reps are full.
    pace: str | None = None
    #: The YAML text as loaded (stored with each campaign version).
    source: str = field(default="", repr=False, compare=False)
    #: ``"steps[1].template"`` → (line, column) in the YAML, for precise error messages.
    positions: Mapping[str, tuple[int, int]] = field(default_factory=lambda: EMPTY, repr=False,
                                                    compare=False)

    def where(self, field_path: str) -> tuple[int | None, int | None]:
        """(line, column) of a field such as ``"follow_up[0].when.clicked"``, or of its
        nearest parent that has one; (None, None) when nothing is known."""
        p = field_path
        while p:
            if p in self.positions:
                return self.positions[p]
            cut = max(p.rfind("."), p.rfind("["))
            p = p[:cut] if cut > 0 else ""
        return self.positions.get("", (None, None))

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def next_step(self, step_id: str | None) -> Step | None:
        """The step after ``step_id`` (the first step for None), or None at the end."""
        if step_id is None:
            return self.steps[0] if self.steps else None
        ids = [s.id for s in self.steps]
        i = ids.index(step_id)
        return self.steps[i + 1] if i + 1 < len(self.steps) else None


@dataclass(frozen=True, slots=True)
class Contact:
    id: int
    email: str
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    industry: str = ""
    phone: str = ""
    timezone: str | None = None
    owner: str | None = None
    territory: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    score: float = 0.0
    hot: bool = False
    status: ContactStatus = "active"
    country: str = ""
    title: str = ""
    department: str = ""

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p) or self.email

    def as_template_vars(self) -> dict[str, Any]:
        """What templates see as ``contact``: the fields plus extra CSV columns."""
        data = dict(self.attributes)
        data.update(
            id=self.id, email=self.email, first_name=self.first_name, last_name=self.last_name,
            name=self.name, company=self.company, industry=self.industry, phone=self.phone,
            timezone=self.timezone, owner=self.owner, territory=self.territory,
            country=self.country, title=self.title, department=self.department,
        )
        return data


@dataclass(frozen=True, slots=True)
class Enrollment:
    id: int
    campaign_id: str
    contact_id: int
    state: EnrollmentState
    next_step: str | None
    next_at: datetime | None
    last_sent_at: datetime | None = None
    exit_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Send:
    """One row of the outbox / ledger: one enrollment and step."""

    id: int
    enrollment_id: int
    campaign_id: str
    step_id: str
    contact_id: int
    status: SendStatus
    attempts: int = 0
    message_id: str | None = None
    queued_at: datetime | None = None
    sent_at: datetime | None = None
    next_attempt_at: datetime | None = None
    error_code: int | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class Link:
    id: int
    campaign_id: str
    step_id: str
    name: str
    url: str
    honeypot: bool = False


@dataclass(frozen=True, slots=True)
class Click:
    """A row of the click ledger. ``kind`` is ``click`` (a tracked link, the honeypot too),
    ``open`` (the pixel; ``link_id`` None) or ``unsubscribe`` (a GET of the unsubscribe page;
    ``link_id`` None): opens and unsubscribe-page fetches are evidence for the judge, never clicks."""

    id: int
    send_id: int
    link_id: int | None
    at: datetime
    ip: str | None
    user_agent: str | None
    method: str
    verdict: ClickVerdict = "pending"
    score: float = 0.0
    reasons: tuple[str, ...] = ()
    kind: ClickKind = "click"


@dataclass(frozen=True, slots=True)
class Task:
    id: int
    contact_id: int
    campaign_id: str
    kind: TaskKind
    priority: Priority
    status: TaskStatus
    due_at: datetime
    created_at: datetime
    rep_id: str | None = None
    reason: str = ""
    context: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    outcome: Outcome | None = None
    notes: str | None = None
    snooze_until: datetime | None = None
    escalated_at: datetime | None = None
    done_at: datetime | None = None
    #: Unanswered calls so far (voicemail / no answer) and how many the cadence allows.
    attempts: int = 0
    max_attempts: int = 3
    #: One entry per unanswered call: ``{"n", "at", "outcome", "notes", "next_at"}``.
    attempt_log: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class TaskLoad:
    """A task that uses a rep's capacity: open (counted on the day it is due; overdue ones
    today) or done (on the day it was done). See :func:`nurture.routing.day_loads`."""

    rep_id: str
    due_at: datetime
    done_at: datetime | None = None
    priority: Priority = "normal"


@dataclass(frozen=True, slots=True)
class Rep:
    id: str
    name: str
    email: str
    timezone: str = "UTC"
    hours: Hours | None = None
    days: frozenset[int] = frozenset(range(5))
    territory: tuple[str, ...] = ()
    #: Calls a day: calls done plus open calls due that day stay within it (the day plan).
    capacity: int = 16
    #: Public holidays (``calendar:``, default the time zone's country) and company closures:
    #: days off, on which no task falls due.
    calendar: BusinessCalendar = NO_CALENDAR


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the append-only event log (``send.sent``, ``task.created`` …) that feeds
    webhooks and stats; ``payload`` is the JSON object stored with it."""

    id: int
    at: datetime
    kind: str
    payload: Mapping[str, Any]
