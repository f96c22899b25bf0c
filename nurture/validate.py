"""``nurture validate``: every problem in the campaigns and their templates, in one run.

Campaign files are checked by :mod:`nurture.campaigns` (schema, durations, time zones, step
ids); this module adds what needs the templates: each step's template exists, compiles and
renders against every sample contact, carries an unsubscribe link, and every link name a
condition, follow-up rule or scoring rule relies on exists in the step(s) it refers to.
Problems come back as :class:`~nurture.errors.CampaignError` located in the campaign file
(``file:line:col: field: message``), in file order.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from nurture.campaign_schema import CONTACT_FIELDS
from nurture.campaigns import campaign_error, campaign_files, load_campaign, sample_contact
from nurture.errors import CampaignError, CampaignErrors, NotFound, NurtureError, TemplateError
from nurture.models import Campaign, Condition, Step
from nurture.render import MissingTemplate, Renderer, SubjectError, memory_link_ids

if TYPE_CHECKING:  # pragma: no cover
    from nurture.config import Settings

__all__ = ["Report", "check", "hygiene_warnings", "validate"]

#: Used when a campaign has no samples: templates still get compiled and rendered.
FALLBACK_SAMPLE = {"email": "sample@example.com", "first_name": "Sam", "last_name": "Sample",
                   "company": "Example Co", "industry": "retail"}
# A fixed clock: validation output must not depend on when it runs.
_NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Report:
    """What a validation run found: the problems, and what was checked."""

    errors: tuple[NurtureError, ...]
    campaigns: int = 0
    steps: int = 0
    links: int = 0
    samples: int = 0
    #: ``{campaign id: {step id: link names}}`` for steps that rendered.
    link_names: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)
    #: Not errors, but likely to bite at run time (a note that works only because every
    #: sample has an attribute real contacts may lack).
    warnings: tuple[NurtureError, ...] = ()
    #: Sending hygiene (see :func:`hygiene_warnings`): not errors, unless ``--strict``.
    hygiene: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        """``ok: 2 campaigns, 5 steps, 9 links, 3 sample contacts``."""
        return (f"ok: {_n(self.campaigns, 'campaign')}, {_n(self.steps, 'step')}, "
                f"{_n(self.links, 'link')}, {_n(self.samples, 'sample contact')}")


def validate(paths: list[Path] | None, *, settings: Settings) -> list[NurtureError]:
    """Every problem in the campaign files ``paths`` (files or folders; None means the
    configured campaigns folder) and in the templates they use. Empty means all is well."""
    return list(check(paths, settings=settings).errors)


def check(paths: Iterable[str | os.PathLike[str]] | None, *, settings: Settings,
          root: str | os.PathLike[str] | None = None) -> Report:
    """Like :func:`validate`, with counts for the summary line."""
    root = Path.cwd() if root is None else Path(root)
    errors: list[NurtureError] = []
    files: list[Path] = []
    for p in [settings.campaigns_dir] if paths is None else list(paths):
        path = Path(p)
        if path.is_dir():
            found = campaign_files(path)
            if not found and paths is not None:
                errors.append(NotFound(f"no campaign files (*.yaml) in {_shown(path, root)}"))
            files.extend(found)
        elif paths is None:
            errors.append(NotFound(f"no campaigns folder at {_shown(path, root)}"))
        else:
            files.append(path)

    renderer = Renderer.from_settings(settings)
    seen: dict[str, str] = {}
    steps = links = samples = 0
    link_names: dict[str, dict[str, frozenset[str]]] = {}
    warnings: list[NurtureError] = []
    campaigns = 0
    loaded: list[Campaign] = []
    for f in files:
        try:
            c = load_campaign(f, root=root)
        except CampaignErrors as e:
            errors.extend(e.errors)
            continue
        if c.id in seen:
            line, col = c.where("id")
            errors.append(CampaignError(f'another file already defines campaign "{c.id}" ({seen[c.id]})',
                                        file=c.path, line=line, column=col, field="id"))
            continue
        seen[c.id] = c.path
        campaigns += 1
        steps += len(c.steps)
        samples += len(c.samples)
        names = _check_templates(c, renderer, errors)
        _check_link_refs(c, names, errors)
        _check_notes(c, names, errors, warnings)
        link_names[c.id] = names
        links += sum(len(v) for v in names.values())
        loaded.append(c)
    return Report(errors=tuple(errors), campaigns=campaigns, steps=steps, links=links,
                  samples=samples, link_names=link_names, warnings=tuple(warnings),
                  hygiene=tuple(hygiene_warnings(settings, loaded)))


def hygiene_warnings(settings: Settings, campaigns: Iterable[Campaign]) -> list[str]:
    """What costs deliverability without being an error: no DKIM, a campaign ``sender:``
    whose domain is not aligned with ``dkim.domain`` (DMARC, RFC 7489 §3.1: the From domain
    and the signing domain must share their organisational domain), a tracking URL that is
    not https (RFC 8058 one-click unsubscribe needs https) or is an IP address, no postal
    address (required in commercial mail by CAN-SPAM and Japan's Act on Specified Electronic
    Mail). ``nurture validate`` and the start of ``send``/``run`` print them; ``--strict``
    fails on them."""
    out: list[str] = []
    dkim = settings.dkim
    if dkim is None:
        out.append("config: dkim: no DKIM key configured: mail goes out unsigned, and DMARC cannot pass on DKIM")
    default_from = settings.sender.from_address
    for c in campaigns:
        sender = c.sender or default_from
        domain = _domain_of(sender)
        if dkim is not None and not _aligned(domain, dkim.domain.lower()):
            where = (f"{c.path}:{c.where('sender')[0] or 1}: sender" if c.sender
                     else f"config: sender.from (campaign {c.id})")
            out.append(f"{where}: From domain {domain or '?'} is not aligned with dkim.domain {dkim.domain}:"
                       " DMARC fails, and the mail is signed for another domain")
    base = settings.tracking.base_url
    parsed = urlsplit(base)
    if parsed.scheme != "https":
        out.append(f"config: tracking.base_url: {base} is not https: one-click unsubscribe (RFC 8058) needs https")
    if parsed.hostname and _is_ip(parsed.hostname):
        out.append(f"config: tracking.base_url: {base} is an IP address: links to bare IPs read as spam;"
                   " use a host name under your domain")
    if not settings.sender.postal_address.strip():
        out.append("config: sender.postal_address: missing: commercial mail must carry the sender's postal address")
    return out


def _domain_of(address: str) -> str:
    return (parseaddr(address)[1] or address).rpartition("@")[2].strip(" >").lower()


def _aligned(a: str, b: str) -> bool:
    """Relaxed alignment, approximated without the public suffix list: equal, or one a
    subdomain of the other."""
    return bool(a) and (a == b or a.endswith("." + b) or b.endswith("." + a))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _check_templates(c: Campaign, renderer: Renderer, errors: list[NurtureError]) -> dict[str, frozenset[str]]:
    """Render each step for each sample; the link names of every step that rendered."""
    names: dict[str, frozenset[str]] = {}
    samples = list(c.samples) or [FALLBACK_SAMPLE]
    campaign_wide: set[str] = set()  # footer texts: one report, not one per step
    plain_c = replace(c, footer={}, locale=c.locale if not c.footer else "en")
    for i, step in enumerate(c.steps):
        reported: set[str] = set()
        step_links: set[str] = set()
        rendered = body_failed = False
        missing_unsub = False
        for j, sample in enumerate(samples):
            who = f" (sample {sample.get('email', j + 1)})" if c.samples else ""
            contact = sample_contact(sample, contact_id=j + 1)
            try:
                try:
                    msg = renderer.render(campaign=c, step=step, contact=contact, send_id=0,
                                          link_ids=memory_link_ids(), now=_NOW)
                except SubjectError as e:
                    seen = campaign_wide if e.field.startswith("footer.") else reported
                    if str(e) not in seen:
                        seen.add(str(e))
                        errors.append(CampaignError(e.message + (who if e.variable else ""), file=c.path,
                                                    line=e.line, column=e.column, field=e.field))
                    # Still check the body, with plain one-line texts: all problems in one run.
                    msg = renderer.render(campaign=plain_c, step=replace(step, subject=step.id, preheader=None),
                                          contact=contact, send_id=0, link_ids=memory_link_ids(), now=_NOW)
            except MissingTemplate as e:
                body_failed = True
                errors.append(campaign_error(c, e.message if e.line is None else str(e),
                                             field=f"steps[{i}].{_which(step, e, renderer)}"))
                break
            except TemplateError as e:
                body_failed = True
                key = str(e)
                if key not in reported:
                    reported.add(key)
                    suffix = who if e.variable else ""
                    errors.append(campaign_error(c, key + suffix, field=f"steps[{i}].{_which(step, e, renderer)}"))
                if not e.variable:
                    break  # a syntax error is the same for every sample
                continue
            rendered = True
            step_links.update(link.name for link in msg.links if not link.honeypot)
            missing_unsub = missing_unsub or not msg.has_unsubscribe_link
        if missing_unsub:
            errors.append(campaign_error(
                c, f"{renderer.display(step.template)} has no unsubscribe link: add "
                   '<a href="{{ unsubscribe_url }}">Unsubscribe</a> (or extend base.html, whose footer has one)',
                field=f"steps[{i}].template"))
        if rendered and not body_failed:
            names[step.id] = frozenset(step_links)
    return names


def _which(step: Step, e: TemplateError, renderer: Renderer) -> str:
    """Whether a template error belongs to the step's text template or its HTML template."""
    if step.text_template and e.template == renderer.display(step.text_template):
        return "text_template"
    return "template"


def _check_link_refs(c: Campaign, names: dict[str, frozenset[str]], errors: list[NurtureError]) -> None:
    step_ids = [s.id for s in c.steps]
    for i, step in enumerate(c.steps):
        for key in ("unless", "only_if"):
            cond = getattr(step, key)
            if cond is not None:
                _check_cond(c, cond, step_ids[:i], names, f"steps[{i}].{key}", "an earlier step", errors)
    for k, rule in enumerate(c.follow_up):
        _check_cond(c, rule.when, step_ids, names, f"follow_up[{k}].when", "any step", errors)
    for k, score in enumerate(c.scoring.rules):
        _check_cond(c, score.when, step_ids, names, f"scoring.rules[{k}].when", "any step", errors)


def _check_cond(c: Campaign, cond: Condition, scope: list[str], names: dict[str, frozenset[str]],
                path: str, anywhere: str, errors: list[NurtureError]) -> None:
    if cond.clicked == "any" or cond.replied:
        return
    steps = [cond.step] if cond.step else scope
    if not steps or any(s not in names for s in steps):
        return  # a step that did not render has been reported already; nothing to compare with
    available = sorted(set().union(*(names[s] for s in steps)))
    if cond.clicked in available:
        return
    where = f'step "{cond.step}"' if cond.step else anywhere
    known = ", ".join(available) or "none"
    errors.append(campaign_error(
        c, f'no link named "{cond.clicked}" in {where} (links: {known}); name a link with '
           f'data-link="{cond.clicked}" in its template', field=f"{path}.clicked"))


def _check_notes(c: Campaign, names: dict[str, frozenset[str]], errors: list[NurtureError],
                 warnings: list[NurtureError] | None = None) -> None:
    """Follow-up notes render for every sample with the variables nurture.followup gives them
    (the campaign's ``defaults`` applied); a note that renders only thanks to a sample's own
    attributes (a contact without them would get the generic note) is a warning."""
    from nurture.rules import note_vars, render_note  # the rules own the note variables

    samples = list(c.samples) or [FALLBACK_SAMPLE]
    for k, rule in enumerate(c.follow_up):
        if not rule.note:
            continue
        step = next((s for s in c.steps if s.id == rule.when.step), c.steps[0] if c.steps else None)
        link = rule.when.clicked if rule.when.clicked != "any" else next(iter(sorted(names.get(
            step.id if step else "", ()))), "a link")
        rest: dict[str, object] = {
            "step": {"id": step.id if step else "", "subject": step.subject if step else ""},
            "link": {"name": link, "url": "https://example.com/"},
            "campaign": {"id": c.id, "name": c.name}, "clicks_this_week": 1, "minutes_ago": 0}
        if rule.when.replied:  # what nurture.followup.reply_task gives a reply rule's note
            rest["reply"] = {"text": "Could you call me on Thursday?", "subject": "Re: a mail"}
        failed = False
        for sample in samples:
            try:
                render_note(rule.note, note_vars(c, sample_contact(sample), **rest))
            except TemplateError as e:
                message = _explain(rule.note, e.message.removeprefix("follow-up note: "))
                who = f" (sample {sample.get('email')})" if c.samples and "undefined" in message else ""
                errors.append(campaign_error(c, message + who, field=f"follow_up[{k}].note"))
                failed = True
                break
        if failed or warnings is None or not c.samples:
            continue
        # The same note for a contact with only the standard fields: what the samples'
        # extra columns supply must come from defaults, or real contacts get the generic note.
        bare = {key: v for key, v in samples[0].items() if key in CONTACT_FIELDS}
        try:
            render_note(rule.note, note_vars(c, sample_contact(bare), **rest))
        except TemplateError as e:
            message = _explain(rule.note, e.message.removeprefix("follow-up note: "))
            warnings.append(campaign_error(
                c, f"{message} for a contact without that column (every sample has it): add it "
                   "under defaults: or the rep gets the generic note", field=f"follow_up[{k}].note"))


def _explain(source: str, message: str) -> str:
    """``'dict object' has no attribute 'x'`` → ``'contact.x' is undefined``, from the source."""
    m = re.fullmatch(r"'dict object' has no attribute '(\w+)'", message)
    if m:
        found = re.search(r"\b([A-Za-z_]\w*(?:\.\w+)*)\." + re.escape(m.group(1)) + r"\b", source)
        if found:
            return f"'{found.group(1)}.{m.group(1)}' is undefined"
    return message


def _shown(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"
