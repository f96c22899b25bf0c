"""Fictional e-commerce merchants for ``nurture demo``: deterministic, varied, plausible.

Every name, company and address here is invented; e-mail domains use the reserved
``.example`` top-level domain so no real mailbox can ever be reached.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_REGIONS = (
    # territory, time zone, first names, last names
    ("JP", "Asia/Tokyo", ("Haruto", "Yui", "Sota", "Aoi", "Ren", "Hina", "Kaito", "Mei"),
     ("Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Ito", "Yamamoto", "Nakamura")),
    ("GB", "Europe/London", ("Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Jack", "Freya"),
     ("Smith", "Jones", "Taylor", "Brown", "Evans", "Wilson", "Thomas", "Roberts")),
    ("US", "America/New_York", ("Liam", "Olivia", "Noah", "Emma", "Mason", "Sophia", "Ethan", "Mia"),
     ("Johnson", "Williams", "Miller", "Davis", "Garcia", "Martinez", "Clark", "Lewis")),
)
_SHOPS = (
    ("Kumo Tea Works", "food & beverage"), ("Hanabi Outdoor", "sporting goods"),
    ("Maple & Thread", "apparel"), ("Northwind Ceramics", "home goods"),
    ("Blue Harbor Coffee", "food & beverage"), ("Pixel Pet Supply", "pet supplies"),
    ("Tsubaki Beauty", "beauty"), ("Copperleaf Kitchen", "home goods"),
    ("Rustic Cycle Co.", "sporting goods"), ("Lumen Lighting Store", "electronics"),
    ("Sakura Stationery", "stationery"), ("Harbor Books", "books"),
    ("Glacier Gear", "outdoor"), ("Fernway Plants", "garden"), ("Velvet Vinyl", "music"),
    ("Quill & Ink", "stationery"), ("Orbit Toys", "toys"), ("Saltwater Surf Shop", "sporting goods"),
    ("Nimbus Audio", "electronics"), ("Juniper Jewelry", "jewelry"),
)
_SIMILAR = {
    "food & beverage": "Kissa Roasters", "sporting goods": "Summit Sports", "apparel": "Loom & Co.",
    "home goods": "Hearth Living", "pet supplies": "Paws Market", "beauty": "Glow Lab",
    "electronics": "Circuit Corner", "stationery": "Paperie Tokyo", "books": "Chapter House",
    "outdoor": "Trailhead Supply", "garden": "Green Thumb Depot", "music": "Groove Records",
    "toys": "Toybox Planet", "jewelry": "Gilded Lane",
}
_OWNERS = {"JP": "aoki", "GB": "baker", "US": "garcia"}
COLUMNS = ("email", "first_name", "last_name", "company", "industry", "phone", "timezone",
           "owner", "territory", "similar_company", "monthly_orders")


@dataclass(frozen=True, slots=True)
class Merchant:
    email: str
    first_name: str
    last_name: str
    company: str
    industry: str
    phone: str
    timezone: str
    owner: str
    territory: str
    similar_company: str
    monthly_orders: int

    def row(self) -> dict[str, str]:
        return {c: str(getattr(self, c)) for c in COLUMNS}


def merchants(count: int = 60, *, seed: int = 7) -> Iterator[Merchant]:
    """``count`` fictional merchants; a third of them have an owner, the rest are routed."""
    rng = random.Random(seed)
    for i in range(count):
        territory, tz, firsts, lasts = _REGIONS[i % len(_REGIONS)]
        shop, industry = _SHOPS[(i * 7) % len(_SHOPS)]
        company = shop if i < len(_SHOPS) else f"{shop} {['East', 'West', 'Online', 'Studio'][i % 4]}"
        first, last = rng.choice(firsts), rng.choice(lasts)
        domain = "".join(ch for ch in company.lower() if ch.isalnum())[:20] + ".example"
        yield Merchant(
            email=f"{first.lower()}.{last.lower()}{i}@{domain}",
            first_name=first, last_name=last, company=company, industry=industry,
            phone=_phone(territory, rng),
            timezone=tz, owner=_OWNERS[territory] if i % 3 == 0 else "", territory=territory,
            similar_company=_SIMILAR[industry], monthly_orders=rng.randint(300, 40000),
        )


def _phone(territory: str, rng: random.Random) -> str:
    # Numbers from ranges reserved for fiction (US 555-01xx, UK Ofcom drama numbers).
    if territory == "US":
        return f"+1 212-555-01{rng.randint(0, 99):02d}"
    if territory == "GB":
        return f"+44 20 7946 0{rng.randint(0, 999):03d}"
    return f"+81 3-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"


def write_csv(path: Path, count: int = 60, *, seed: int = 7) -> Path:
    """Write the demo merchants as a contacts CSV ready for ``nurture contacts import``."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for m in merchants(count, seed=seed):
            w.writerow(m.row())
    return path
