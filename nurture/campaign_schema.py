"""The rules of the campaign format: its keys, its JSON Schema, and the checker that turns
parsed YAML into a :class:`~nurture.models.Campaign` while collecting every problem.

``nurture.campaigns`` is the public entry point; the shipped JSON Schema
(``nurture/schema/campaign.schema.json``) and the checker here must agree, and
tests/test_campaigns.py holds them to it.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any, TypeVar

from nurture.cadence import DEFAULT_ATTEMPTS, DEFAULT_RETRY, check_retry
from nurture.calendars import NONE_WORDS, Closure, check_country, parse_closure
from nurture.errors import CampaignError
from nurture.i18n import DEFAULT_LOCALE, FOOTER_KEYS, LOCALE_TAG, locale_for, unsubscribe_problem
from nurture.models import (
    OUTCOMES,
    PRIORITIES,
    TASK_KINDS,
    Campaign,
    Condition,
    Exit,
    FollowUpRule,
    ScoreRule,
    Scoring,
    Step,
    one_of,
)
from nurture.timeutil import WEEKDAYS, Hours, Rate, Window, parse_duration, parse_hours, parse_rate, zone
from nurture.yamlsrc import Path as YPath
from nurture.yamlsrc import Source, field_name

T = TypeVar("T")
L = TypeVar("L", bound=str)

#: Allowed keys per mapping, in the order the docs list them; required ones in ``_REQUIRED``.
TOP_KEYS = ("id", "name", "sender", "reply_to", "timezone", "send_window", "rate", "calendar", "closures",
            "pace", "defaults", "steps", "follow_up", "scoring", "exit", "out_of_office", "locale", "footer",
            "samples")
WINDOW_KEYS = ("days", "hours")
STEP_KEYS = ("id", "subject", "preheader", "template", "text_template", "wait", "unless", "only_if")
CONDITION_KEYS = ("clicked", "step")
#: ``when: {replied: true, step: webinar}`` in follow-up and scoring rules (not in step conditions).
REPLY_CONDITION_KEYS = ("replied", "step")
OUT_OF_OFFICE_KEYS = ("pause",)
#: ``exit: [{replied: company}]``: whose enrollments a reply ends.
REPLIED_SCOPES = ("contact", "company")
FOLLOW_UP_KEYS = ("when", "task", "priority", "due", "note", "attempts", "retry", "unreachable")
UNREACHABLE_KEYS = ("step", "enroll")
SCORING_KEYS = ("rules", "half_life", "hot_threshold")
SCORE_RULE_KEYS = ("when", "points")
EXIT_KINDS = ("unsubscribed", "bounced", "replied")
#: ``pace: reps``: hold call-raising steps while the reps are full (the only pacing so far).
PACES = ("reps",)
#: Sample keys that fill :class:`Contact` fields; any other key becomes an attribute.
CONTACT_FIELDS = ("email", "first_name", "last_name", "company", "industry", "phone",
                  "timezone", "owner", "territory")
_REQUIRED = {"top": ("id", "name", "timezone", "steps"), "step": ("id", "subject", "template"),
             "follow_up": ("when",), "score_rule": ("when", "points"), "condition": ("clicked",)}

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
LINK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: A template path inside templates_dir: relative, no ``..`` segment, no spaces or backslashes.
TEMPLATE_PATH = re.compile(r"^(?![/~])(?!(.*/)?\.\.(/|$))(?!.*//)[^\s\\:]+$")
_TEMPLATE_WHAT = "is not a template path inside templates_dir (relative, no ../, no spaces)"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
#: A From / Reply-To address, bare or with a display name: ``Acme <hello@acme.example>``.
ADDRESS = re.compile(r"^([^<>]*<)?[^@\s<>]+@[^@\s<>]+>?$")
_DAY_SPEC = re.compile(r"^\s*([a-z]{3})\s*(?:-\s*([a-z]{3}))?\s*$")
_DEFAULT_DUE = timedelta(days=1)


def campaign_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft-07) of the campaign format, as shipped in
    ``nurture/schema/campaign.schema.json``. Returns a fresh copy."""
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


@cache
def _schema_text() -> str:
    return resources.files("nurture").joinpath("schema/campaign.schema.json").read_text(encoding="utf-8")


def check_campaign(src: Source, *, expected_id: str | None = None) -> tuple[Campaign | None, list[CampaignError]]:
    """Check parsed campaign YAML: the campaign (None if anything is wrong) and every problem
    found, in file order. ``expected_id`` is the file name without its extension."""
    checker = _Checker(src)
    campaign = checker.campaign(expected_id)
    errors = sorted(checker.errors, key=lambda e: (e.line or 0, e.column or 0))
    return (None if errors else campaign), errors


_TYPE_NAMES = {str: "text", int: "a whole number", float: "a number", bool: "true or false",
               list: "a list", dict: "a mapping (key: value lines)"}


def _type_of(value: Any) -> str:
    if value is None:
        return "empty"
    for t in (bool, int, float, str, list, dict):
        if isinstance(value, t):
            return _TYPE_NAMES[t]
    return type(value).__name__


class _Checker:
    """Walks the parsed YAML, collecting every problem instead of stopping at the first."""

    def __init__(self, src: Source) -> None:
        self.src = src
        self.errors: list[CampaignError] = []

    def error(self, path: YPath, message: str) -> None:
        line, col = self.src.where(path)
        self.errors.append(CampaignError(message, file=self.src.file, line=line, column=col,
                                         field=field_name(path) or None))

    def mapping(self, value: Any, path: YPath, keys: tuple[str, ...], required: tuple[str, ...] = (),
                what: str = "a mapping (key: value lines)") -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.error(path, f"must be {what}, not {_type_of(value)}")
            return None
        suggested = set()
        for key in value:
            if key not in keys:
                close = difflib.get_close_matches(str(key), [k for k in keys if k not in value], n=1, cutoff=0.6)
                hint = f'did you mean "{close[0]}"?' if close else f"known keys: {', '.join(keys)}"
                self.error((*path, str(key)), f'unknown key "{key}" ({hint})')
                suggested.update(close)
        for key in keys:
            if key in value and value[key] is None:
                self.error((*path, key), "is empty: give it a value or remove the line")
        for key in required:
            # A typo of a required key is one problem, reported once as the unknown key.
            if key not in value and key not in suggested:
                self.error((*path, key), "is required")
        return value

    def typed(self, m: dict[str, Any], key: str, path: YPath, types: tuple[type, ...],
              default: T | None = None) -> Any:
        """``m[key]`` if it has one of ``types``; records an error and returns ``default`` otherwise."""
        value = m.get(key)
        if value is None:
            return default
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            names = "a number" if set(types) == {int, float} else " or ".join(_TYPE_NAMES[t] for t in types)
            hint = " (put it in quotes)" if str in types and not isinstance(value, (list, dict)) else ""
            self.error((*path, key), f"must be {names}, not {_type_of(value)}{hint}")
            return default
        return value

    def text(self, m: dict[str, Any], key: str, path: YPath, pattern: re.Pattern[str] | None = None,
             what: str = "") -> str | None:
        value: str | None = self.typed(m, key, path, (str,))
        if value is None:
            return None
        if not value.strip():
            self.error((*path, key), "must not be empty")
            return None
        if pattern is not None and not pattern.match(value):
            self.error((*path, key), f'"{value}" {what}')
            return None
        return value

    def convert(self, path: YPath, fn: Callable[[Any], T], value: Any) -> T | None:
        try:
            return fn(value)
        except ValueError as e:
            self.error(path, str(e))
            return None

    # -- the campaign -------------------------------------------------------------------

    def campaign(self, expected_id: str | None) -> Campaign | None:
        data = self.src.data
        if data is None:
            self.error((), "the file is empty: a campaign needs id, name, timezone and steps")
            return None
        top = self.mapping(data, (), TOP_KEYS, _REQUIRED["top"],
                           what="a mapping of keys (id:, name:, steps: ...)")
        if top is None:
            return None
        cid = self.text(top, "id", (), SLUG, "is not a valid id (lowercase letters, digits, - and _; at most 64)")
        if cid and expected_id and cid != expected_id:
            self.error(("id",), f'"{cid}" does not match the file name (rename the file to {cid}.yaml '
                                f'or set id: {expected_id})')
        name = self.text(top, "name", ())
        what = 'is not an email address (e.g. "Acme Payments <hello@acme.example>")'
        sender = self.text(top, "sender", (), ADDRESS, what)
        reply_to = self.text(top, "reply_to", (), ADDRESS, what)
        tz = self.text(top, "timezone", ())
        if tz is not None:
            self.convert(("timezone",), zone, tz)
        window = self.window(top)
        rate = self.rate(top)
        calendar, closures = self.calendar(top)
        pace = self.text(top, "pace", ())
        if pace is not None and pace not in PACES:
            self.error(("pace",), f'"{pace}" is not a pace (use {", ".join(PACES)})')
        defaults = self.defaults(top)
        steps = self.steps(top)
        step_ids = [s.id for s in steps]
        follow_up = self.follow_ups(top, step_ids)
        scoring = self.scoring(top, step_ids)
        exits = self.exits(top)
        ooo_pause = self.out_of_office(top)
        samples = self.samples(top)
        locale, footer = self.locale(top)
        if self.errors:
            return None
        return Campaign(
            id=cid or "", name=name or "", path=self.src.file, timezone=tz or "UTC",
            steps=tuple(steps), send_window=window, sender=sender, reply_to=reply_to, rate=rate,
            follow_up=tuple(follow_up), exits=tuple(exits), scoring=scoring,
            out_of_office_pause=ooo_pause, samples=tuple(samples), defaults=defaults,
            locale=locale, footer=footer,
            calendar=calendar, closures=closures, pace=pace,
        )

    def locale(self, top: dict[str, Any]) -> tuple[str, Mapping[str, str]]:
        """``locale:`` (a tag whose language the catalogue has) and the ``footer:`` overrides."""
        tag = self.text(top, "locale", (), LOCALE_TAG, 'is not a language tag such as "en", "ja" or "en-GB"')
        footer: dict[str, str] = {}
        if top.get("footer") is not None:
            f = self.mapping(top["footer"], ("footer",), FOOTER_KEYS)
            for key in FOOTER_KEYS if f is not None else ():
                value = self.text(f or {}, key, ("footer",))
                problem = unsubscribe_problem(value) if key == "unsubscribe" and value else None
                if problem:
                    self.error(("footer", key), problem)
                elif value is not None:
                    footer[key] = value
        if tag is not None:
            self.convert(("locale",), lambda t: locale_for(t, footer=footer), tag)
        return tag or DEFAULT_LOCALE, MappingProxyType(footer)

    def window(self, top: dict[str, Any]) -> Window:
        if top.get("send_window") is None:
            return Window()
        path: YPath = ("send_window",)
        w = self.mapping(top["send_window"], path, WINDOW_KEYS)
        if w is None:
            return Window()
        days = frozenset(range(7))
        raw_days = w.get("days")
        if raw_days is not None:
            if isinstance(raw_days, str):
                parsed = self.convert((*path, "days"), _parse_day_string, raw_days)
            elif isinstance(raw_days, list) and raw_days:
                parsed = frozenset()
                for i, d in enumerate(raw_days):
                    if not isinstance(d, str) or d not in WEEKDAYS:
                        self.error((*path, "days", i), f'"{d}" is not a weekday (use {", ".join(WEEKDAYS)})')
                    else:
                        parsed |= {WEEKDAYS.index(d)}
            else:
                self.error((*path, "days"), 'must be a list of weekdays such as [mon, tue, wed] or "mon-fri"')
                parsed = None
            days = parsed or days
        hours: Hours | None = None
        raw_hours = self.typed(w, "hours", path, (str,))
        if raw_hours is not None:
            hours = self.convert((*path, "hours"), parse_hours, raw_hours)
        return Window(days=days, hours=hours)

    def calendar(self, top: dict[str, Any]) -> tuple[str | None, tuple[Closure, ...]]:
        code = self.text(top, "calendar", ())
        if code is not None and code.strip().lower() not in NONE_WORDS:
            code = self.convert(("calendar",), check_country, code)
        elif code is not None:
            code = "none"
        raw = top.get("closures")
        closures: list[Closure] = []
        if raw is not None and not isinstance(raw, list):
            self.error(("closures",), "must be a list of dates or ranges such as [2026-12-29..2027-01-03]")
        for i, item in enumerate(raw or []):
            c = self.convert(("closures", i), parse_closure, item)
            if c is not None:
                closures.append(c)
        return code, tuple(closures)

    def rate(self, top: dict[str, Any]) -> Rate | None:
        value = top.get("rate")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.error(("rate",), f'must be a rate such as "1000/h", not {_type_of(value)}')
            return None
        return self.convert(("rate",), parse_rate, value)

    def defaults(self, top: dict[str, Any]) -> Mapping[str, Any]:
        if top.get("defaults") is None:
            return MappingProxyType({})
        d = top["defaults"]
        if not isinstance(d, dict):
            self.error(("defaults",), f"must be a mapping of variable: value, not {_type_of(d)}")
            return MappingProxyType({})
        for key in d:
            if not VARIABLE.match(str(key)):
                self.error(("defaults", str(key)), f'"{key}" is not a variable name (letters, digits and _)')
        return MappingProxyType(dict(d))

    def steps(self, top: dict[str, Any]) -> list[Step]:
        raw = top.get("steps")
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.error(("steps",), f"must be a list of steps (each line starting with -), not {_type_of(raw)}")
            return []
        if not raw:
            self.error(("steps",), "a campaign needs at least one step")
            return []
        out: list[Step] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(raw):
            path: YPath = ("steps", i)
            s = self.mapping(item, path, STEP_KEYS, _REQUIRED["step"], what="a mapping with id, subject and template")
            if s is None:
                continue
            sid = self.text(s, "id", path, SLUG,
                            "is not a valid step id (lowercase letters, digits, - and _; at most 64)")
            if sid is not None and sid in seen:
                self.error((*path, "id"), f'duplicate step id "{sid}" (also steps[{seen[sid]}])')
            elif sid is not None:
                seen[sid] = i
            subject = self.text(s, "subject", path)
            preheader = self.text(s, "preheader", path)
            template = self.text(s, "template", path, TEMPLATE_PATH, _TEMPLATE_WHAT)
            text_template = self.text(s, "text_template", path, TEMPLATE_PATH, _TEMPLATE_WHAT)
            wait = timedelta(0)
            if s.get("wait") is None:
                if "wait" not in s and i > 0:
                    self.error((*path, "wait"), "is required from the second step on (e.g. wait: 7d)")
            else:
                wait = self.duration(s["wait"], (*path, "wait")) or timedelta(0)
            earlier = [x.id for x in out]
            unless = self.condition(s, "unless", path, earlier, step_condition=True, first=i == 0)
            only_if = self.condition(s, "only_if", path, earlier, step_condition=True, first=i == 0)
            out.append(Step(id=sid or f"#{i}", subject=subject or "", template=template or "",
                            wait=wait, text_template=text_template, unless=unless, only_if=only_if,
                            line=self.src.where(path)[0], preheader=preheader))
        return out

    def duration(self, value: Any, path: YPath, *, positive: bool = False) -> timedelta | None:
        if isinstance(value, (list, dict)):
            self.error(path, f"must be a duration such as 7d or 36h, not {_type_of(value)}")
            return None
        td = self.convert(path, parse_duration, value)
        if td is not None and positive and td <= timedelta(0):
            self.error(path, "must be longer than zero")
            return None
        return td

    def condition(self, m: dict[str, Any], key: str, path: YPath, steps: list[str], *,
                  step_condition: bool = False, first: bool = False) -> Condition | None:
        value = m.get(key)
        if value is None:
            return None
        cpath = (*path, key)
        if value == "replied" or (isinstance(value, dict) and "replied" in value):
            if step_condition:
                self.error(cpath, "a step cannot wait for a reply: replied works in follow_up and scoring "
                                  "rules; to stop the campaign when a contact replies, add replied to exit")
                return None
            return self.reply_condition(value, cpath, steps)
        if value == "clicked":
            cond = Condition()
        elif isinstance(value, dict):
            c = self.mapping(value, cpath, CONDITION_KEYS, _REQUIRED["condition"])
            if c is None:
                return None
            clicked = self.text(c, "clicked", cpath, LINK_NAME,
                                "is not a link name (the data-link of a link, or any)")
            step = self.text(c, "step", cpath)
            if step is not None and step not in steps:
                if step_condition and step == m.get("id"):
                    self.error((*cpath, "step"), f'"{step}" is this step itself: a condition can only '
                                                 f"look at clicks in earlier steps")
                else:
                    where = "an earlier step" if step_condition else "a step"
                    close = difflib.get_close_matches(step, steps, n=1)
                    hint = f'did you mean "{close[0]}"? ' if close else ""
                    known = ", ".join(steps) or "none"
                    self.error((*cpath, "step"), f'"{step}" is not {where} of this campaign ({hint}steps: {known})')
                step = None
            if clicked is None:
                return None
            cond = Condition(clicked=clicked, step=step)
        else:
            self.error(cpath, f'must be "clicked" or a mapping such as {{clicked: pricing}}, not {_describe(value)}')
            return None
        if step_condition and first:
            self.error(cpath, "the first step cannot have a condition: nothing has been sent yet")
            return None
        return cond

    def reply_condition(self, value: Any, cpath: YPath, steps: list[str]) -> Condition | None:
        if value == "replied":
            return Condition(replied=True)
        c = self.mapping(value, cpath, REPLY_CONDITION_KEYS, ("replied",))
        if c is None:
            return None
        if c.get("replied") is not True:
            self.error((*cpath, "replied"), f"must be true (a reply to any step), not {_describe(c.get('replied'))}")
            return None
        step = self.text(c, "step", cpath)
        if step is not None and step not in steps:
            close = difflib.get_close_matches(step, steps, n=1)
            hint = f'did you mean "{close[0]}"? ' if close else ""
            self.error((*cpath, "step"), f'"{step}" is not a step of this campaign ({hint}steps: {", ".join(steps)})')
            return None
        return Condition(replied=True, step=step)

    def out_of_office(self, top: dict[str, Any]) -> timedelta | None:
        if top.get("out_of_office") is None:
            return None
        path: YPath = ("out_of_office",)
        o = self.mapping(top["out_of_office"], path, OUT_OF_OFFICE_KEYS)
        if o is None or o.get("pause") is None:
            return None
        return self.duration(o["pause"], (*path, "pause"))

    def follow_ups(self, top: dict[str, Any], steps: list[str]) -> list[FollowUpRule]:
        out: list[FollowUpRule] = []
        for _, path, r in self.items(top, "follow_up", FOLLOW_UP_KEYS, _REQUIRED["follow_up"],
                                     "a rule with when, task, priority and due"):
            when = self.condition(r, "when", path, steps)
            task = self.choice(r, "task", path, TASK_KINDS, "call")
            priority = self.choice(r, "priority", path, PRIORITIES, "normal")
            due = _DEFAULT_DUE if r.get("due") is None else self.duration(r["due"], (*path, "due"))
            note = self.typed(r, "note", path, (str,))
            attempts, retry, unreachable = self.cadence(r, path, steps)
            if when is not None and due is not None and task and priority:
                out.append(FollowUpRule(when=when, task=task, priority=priority, due=due, note=note,
                                        line=self.src.where(path)[0], attempts=attempts, retry=retry,
                                        unreachable=unreachable))
        return out

    def cadence(self, r: dict[str, Any], path: YPath,
                steps: list[str]) -> tuple[int, tuple[str, ...], Mapping[str, str] | None]:
        """``attempts`` (1–10), ``retry`` (durations or ``next_day HH:MM``), ``unreachable``."""
        attempts = DEFAULT_ATTEMPTS
        raw = r.get("attempts")
        if raw is not None:
            if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 10:
                self.error((*path, "attempts"), f"must be a whole number from 1 to 10, not {_describe(raw)}")
            else:
                attempts = raw
        retry: tuple[str, ...] = DEFAULT_RETRY
        raw = r.get("retry")
        if raw is not None:
            items = raw if isinstance(raw, list) else [raw]
            good: list[str] = []
            for j, item in enumerate(items):
                ipath: YPath = (*path, "retry", j) if isinstance(raw, list) else (*path, "retry")
                try:
                    check_retry(str(item))
                    good.append(str(item).strip())
                except ValueError as e:
                    self.error(ipath, str(e))
            if not items:
                self.error((*path, "retry"), "must list at least one delay, e.g. [2h, next_day 10:00]")
            elif len(good) == len(items):
                retry = tuple(good)
        unreachable: Mapping[str, str] | None = None
        if r.get("unreachable") is not None:
            upath: YPath = (*path, "unreachable")
            u = self.mapping(r["unreachable"], upath, UNREACHABLE_KEYS,
                             what="a mapping such as {step: last-chance} or {enroll: other-campaign}")
            if u is not None:
                if len([k for k in UNREACHABLE_KEYS if u.get(k)]) != 1:
                    self.error(upath, "give one of step or enroll")
                elif u.get("step") is not None and u["step"] not in steps:
                    self.error((*upath, "step"), f'"{u["step"]}" is not a step of this campaign '
                                                 f'(steps: {", ".join(steps) or "none"})')
                elif u.get("enroll") is not None and not SLUG.match(str(u["enroll"])):
                    self.error((*upath, "enroll"), f'"{u["enroll"]}" is not a campaign id')
                else:
                    unreachable = MappingProxyType({k: str(v) for k, v in u.items()})
        return attempts, retry, unreachable

    def items(self, m: dict[str, Any], key: str, keys: tuple[str, ...], required: tuple[str, ...],
              what: str, base: YPath = ()) -> list[tuple[int, YPath, dict[str, Any]]]:
        raw = m.get(key)
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.error((*base, key), f"must be a list (each item starting with -), not {_type_of(raw)}")
            return []
        out = []
        for i, item in enumerate(raw):
            path: YPath = (*base, key, i)
            r = self.mapping(item, path, keys, required, what=what)
            if r is not None:
                out.append((i, path, r))
        return out

    def choice(self, m: dict[str, Any], key: str, path: YPath, allowed: tuple[L, ...],
               default: L | None) -> L | None:
        """``m[key]`` as one of ``allowed`` (``default`` when absent); None after an error."""
        value = m.get(key)
        if value is None:
            return default
        chosen = one_of(value, allowed) if isinstance(value, str) else None
        if chosen is None:
            close = difflib.get_close_matches(str(value), allowed, n=1)
            hint = f'did you mean "{close[0]}"? ' if close else ""
            what = key.replace("_", " ")
            article = "an" if what[0] in "aeiou" else "a"
            self.error((*path, key), f'"{value}" is not {article} {what} ({hint}use {", ".join(allowed)})')
            return None
        return chosen

    def scoring(self, top: dict[str, Any], steps: list[str]) -> Scoring:
        if top.get("scoring") is None:
            return Scoring()
        path: YPath = ("scoring",)
        sc = self.mapping(top["scoring"], path, SCORING_KEYS)
        if sc is None:
            return Scoring()
        rules = []
        for _, rpath, r in self.items(sc, "rules", SCORE_RULE_KEYS, _REQUIRED["score_rule"],
                                      "a rule with when and points", base=path):
            when = self.condition(r, "when", rpath, steps)
            points = self.typed(r, "points", rpath, (int, float))
            if points == 0 and "points" in r and not isinstance(r["points"], bool):
                self.error((*rpath, "points"), "must not be zero")
                points = None
            if when is not None and points is not None:
                rules.append(ScoreRule(when=when, points=float(points)))
        half_life = Scoring().half_life
        if sc.get("half_life") is not None:
            half_life = self.duration(sc["half_life"], (*path, "half_life"), positive=True) or half_life
        threshold = self.typed(sc, "hot_threshold", path, (int, float), Scoring().hot_threshold)
        if threshold is not None and threshold <= 0:
            self.error((*path, "hot_threshold"), "must be above zero")
        return Scoring(rules=tuple(rules), half_life=half_life, hot_threshold=float(threshold))

    def exits(self, top: dict[str, Any]) -> list[Exit]:
        raw = top.get("exit")
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.error(("exit",), f"must be a list such as [unsubscribed, bounced, {{outcome: qualified}}], "
                                  f"not {_type_of(raw)}")
            return []
        out = []
        for i, item in enumerate(raw):
            path: YPath = ("exit", i)
            if isinstance(item, str):
                if item in EXIT_KINDS:
                    out.append(Exit(kind=item))
                elif item in OUTCOMES:
                    self.error(path, f'"{item}" is a task outcome: write {{outcome: {item}}}')
                else:
                    close = difflib.get_close_matches(item, EXIT_KINDS, n=1)
                    hint = f'did you mean "{close[0]}"? ' if close else ""
                    self.error(path, f'"{item}" is not an exit ({hint}use {", ".join(EXIT_KINDS)} '
                                     f"or {{outcome: qualified}})")
            elif isinstance(item, dict) and "replied" in item:
                e = self.mapping(item, path, ("replied",), ("replied",))
                if e is not None and e.get("replied") is not None:
                    scope = self.choice(e, "replied", path, REPLIED_SCOPES, "")
                    if scope:
                        out.append(Exit(kind="replied", value=None if scope == "contact" else scope))
            elif isinstance(item, dict):
                e = self.mapping(item, path, ("outcome",), ("outcome",))
                if e is not None and e.get("outcome") is not None:
                    outcome = self.choice(e, "outcome", path, OUTCOMES, None)
                    if outcome:
                        out.append(Exit(kind="outcome", value=outcome))
            else:
                self.error(path, f"must be unsubscribed, bounced, replied, {{replied: company}} or {{outcome: ...}}, "
                                 f"not {_type_of(item)}")
        return out

    def samples(self, top: dict[str, Any]) -> list[Mapping[str, Any]]:
        raw = top.get("samples")
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.error(("samples",), f"must be a list of contacts (each starting with - email: ...), "
                                     f"not {_type_of(raw)}")
            return []
        out: list[Mapping[str, Any]] = []
        seen: set[str] = set()
        for i, item in enumerate(raw):
            path: YPath = ("samples", i)
            if not isinstance(item, dict):
                self.error(path, f"must be a contact (email: ..., first_name: ...), not {_type_of(item)}")
                continue
            if "email" not in item:
                self.error((*path, "email"), "is required (every sample contact needs an email)")
            for key in CONTACT_FIELDS:
                if key in item and item[key] is None:
                    self.error((*path, key), "is empty: give it a value or remove the line")
            for key in CONTACT_FIELDS:
                value = self.typed(item, key, path, (str,))
                if key == "email" and value is not None:
                    if not EMAIL.match(value):
                        self.error((*path, key), f'"{value}" is not an email address')
                    elif value.lower() in seen:
                        self.error((*path, key), f'duplicate sample "{value}"')
                    seen.add(value.lower())
                if key == "timezone" and value is not None:
                    self.convert((*path, key), zone, value)
            for key in item:
                if not VARIABLE.match(str(key)):
                    self.error((*path, str(key)), f'"{key}" is not a variable name (letters, digits and _)')
            out.append(MappingProxyType(dict(item)))
        return out


def _parse_day_string(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.split(","):
        m = _DAY_SPEC.match(part)
        if not m or m.group(1) not in WEEKDAYS or (m.group(2) and m.group(2) not in WEEKDAYS):
            raise ValueError(f'"{text}" is not a list of weekdays (try "mon-fri" or [mon, wed, fri])')
        a = WEEKDAYS.index(m.group(1))
        b = WEEKDAYS.index(m.group(2)) if m.group(2) else a
        days.update(d % 7 for d in range(a, (b if b >= a else b + 7) + 1))
    return frozenset(days)


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return _type_of(value)
