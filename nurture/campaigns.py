"""Campaign YAML: load, validate and turn into :class:`~nurture.models.Campaign`.

Every problem in a file is collected and raised together as :class:`CampaignErrors`, each
``file:line:col: field: message`` in words a marketer can act on. Template-level checks
(templates exist, compile, render, link names exist) live in ``nurture.validate``; this
module gives it what it needs: step and rule lines, field positions, sample contacts.
The format's rules and its JSON Schema live in ``nurture.campaign_schema``.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from nurture.campaign_schema import CONTACT_FIELDS, campaign_json_schema, check_campaign
from nurture.errors import CampaignError, CampaignErrors, NotFound, NurtureError
from nurture.models import Campaign, Contact
from nurture.yamlsrc import YamlSyntaxError, decode, field_name, load

__all__ = [
    "campaign_error", "campaign_files", "campaign_json_schema", "display_path", "find_campaign",
    "find_sample", "load_campaign", "load_campaigns", "parse_campaign", "sample_contact",
]


def load_campaign(path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None) -> Campaign:
    """Load and check one campaign file.

    ``root`` (the project folder) makes the path in messages and in ``Campaign.path``
    relative to it, e.g. ``campaigns/ec-payments.yaml``; without it the path is kept as given.
    Raises :class:`CampaignErrors` listing every problem found in the file.
    """
    p = Path(path)
    shown = display_path(p, root=root)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise CampaignErrors([CampaignError("file not found", file=shown)]) from None
    except OSError as e:
        raise CampaignErrors([CampaignError(f"cannot read the file: {e.strerror}", file=shown)]) from None
    return parse_campaign(raw, file=shown, expected_id=p.stem)


def parse_campaign(raw: bytes | str, *, file: str, expected_id: str | None = None) -> Campaign:
    """Check campaign YAML held in memory; ``expected_id`` is the file name without ``.yaml``."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    try:
        text = decode(data, file)
    except YamlSyntaxError as e:
        raise CampaignErrors([CampaignError(e.message, file=file, line=e.line, column=e.column)]) from None
    try:
        src = load(text, file)
    except YamlSyntaxError as e:
        message = e.message + _yaml_hint(e.message)
        raise CampaignErrors([CampaignError(message, file=file, line=e.line, column=e.column)]) from None
    campaign, errors = check_campaign(src, expected_id=expected_id)
    if campaign is None:
        raise CampaignErrors(list(errors))
    return replace(campaign, content_hash=hashlib.sha256(data).hexdigest(), source=text,
                    positions=MappingProxyType({field_name(k): v for k, v in src.positions.items()}))


def load_campaigns(directory: str | os.PathLike[str], *,
                   root: str | os.PathLike[str] | None = None) -> list[Campaign]:
    """Load every ``*.yaml`` / ``*.yml`` in ``directory``, sorted by id.

    Problems in all files are reported together in one :class:`CampaignErrors`.
    """
    d = Path(directory)
    if not d.is_dir():
        raise NotFound(f"no campaigns folder at {display_path(d, root=root)}")
    errors: list[NurtureError] = []
    loaded: dict[str, Campaign] = {}
    for f in campaign_files(d):
        try:
            c = load_campaign(f, root=root)
        except CampaignErrors as e:
            errors.extend(e.errors)
            continue
        if c.id in loaded:
            errors.append(CampaignError(f'another file already defines campaign "{c.id}" ({loaded[c.id].path})',
                                        file=c.path, line=c.where("id")[0], column=c.where("id")[1], field="id"))
            continue
        loaded[c.id] = c
    if errors:
        raise CampaignErrors(errors)
    return [loaded[k] for k in sorted(loaded)]


def find_campaign(directory: str | os.PathLike[str], campaign_id: str, *,
                  root: str | os.PathLike[str] | None = None) -> Campaign:
    """Load the campaign ``campaign_id`` from ``directory`` (its file is ``<id>.yaml``).

    Raises :class:`NotFound` naming the known ids, or :class:`CampaignErrors` if the file is bad.
    Other, broken campaign files do not get in the way.
    """
    d = Path(directory)
    files = campaign_files(d) if d.is_dir() else []
    for f in files:
        if f.stem == campaign_id:
            return load_campaign(f, root=root)
    known = ", ".join(f.stem for f in files) or "none"
    hint = difflib.get_close_matches(campaign_id, [f.stem for f in files], n=1)
    maybe = f'did you mean "{hint[0]}"? ' if hint else ""
    raise NotFound(f'no campaign "{campaign_id}" in {display_path(d, root=root)} ({maybe}known: {known})')


def campaign_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The campaign files of a folder, sorted by name."""
    d = Path(directory)
    return sorted(p for p in d.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def display_path(path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None) -> str:
    """``path`` relative to ``root`` when it lies inside it, else as given."""
    p = Path(path)
    if root is not None:
        try:
            return p.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def campaign_error(campaign: Campaign, message: str, *, field: str | None = None) -> CampaignError:
    """A :class:`CampaignError` located at ``field`` of ``campaign`` (e.g. ``"steps[1].template"``).

    For checks made after loading, such as nurture.validate's template checks.
    """
    line, col = campaign.where(field or "")
    return CampaignError(message, file=campaign.path, line=line, column=col, field=field)


def sample_contact(sample: Mapping[str, Any], *, contact_id: int = 0) -> Contact:
    """A :class:`Contact` made from one of a campaign's ``samples`` (for previews and validate)."""
    extra = {k: v for k, v in sample.items() if k not in CONTACT_FIELDS}
    known = {k: sample[k] for k in CONTACT_FIELDS if sample.get(k) is not None}
    return Contact(id=contact_id, attributes=MappingProxyType(extra), **known)


def find_sample(campaign: Campaign, key: str | None = None) -> Mapping[str, Any]:
    """The sample whose email (case-insensitive) or 1-based number is ``key``; the first when None."""
    if not campaign.samples:
        raise NotFound(f'campaign "{campaign.id}" has no samples (add some under samples: in {campaign.path})')
    if key is None:
        return campaign.samples[0]
    if key.isdigit() and 1 <= int(key) <= len(campaign.samples):
        return campaign.samples[int(key) - 1]
    for s in campaign.samples:
        if str(s.get("email", "")).lower() == key.lower():
            return s
    emails = ", ".join(str(s.get("email")) for s in campaign.samples)
    raise NotFound(f'no sample contact "{key}" in campaign "{campaign.id}" (samples: {emails})')


#: The parser's words → what a marketer should check, for the mistakes people make most.
_YAML_HINTS = (
    ("mapping values are not allowed", 'a colon inside a value needs quotes around the whole value '
                                       '(subject: "Webinar: payments that convert"), or the indentation is off'),
    ("found character '\\t'", "indent with spaces, not tabs"),
    ("quoted scalar", "a quote opened on this line or above is never closed"),
    ("a key must be a plain value", 'a value starting with {{ needs quotes: subject: "{{ contact.company }}: ..."'),
    ("flow sequence", "a [ is not closed with ], or a value starting with [ needs quotes"),
    ("flow mapping", "a { is not closed with }, or a value starting with { or {{ needs quotes"),
    ("expected <block end>", "a value that starts with a quote or {{ and goes on after it needs quotes "
                             "around the whole value, or the indentation is off"),
)


def _yaml_hint(message: str) -> str:
    for needle, hint in _YAML_HINTS:
        if needle in message:
            return f"; {hint}"
    return ""
