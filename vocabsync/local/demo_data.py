"""A realistic, deterministic vocabulary for the demo and the benchmarks (no downloads).

Project names are built from Philippine places and construction facilities ("Marikina
Riverbanks Flood Control Phase 2"), categories are the cost lines of a construction company,
files are monthly spreadsheets.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

PLACES = (
    "Marikina",
    "Pasig",
    "Quezon City",
    "Taguig",
    "Makati",
    "Caloocan",
    "Antipolo",
    "Cainta",
    "Taytay",
    "Bulacan",
    "Malolos",
    "Meycauayan",
    "San Jose del Monte",
    "Cavite",
    "Bacoor",
    "Imus",
    "Dasmarinas",
    "Laguna",
    "Calamba",
    "Santa Rosa",
    "Binan",
    "Batangas",
    "Lipa",
    "Tanauan",
    "Pampanga",
    "San Fernando",
    "Angeles",
    "Tarlac",
    "Nueva Ecija",
    "Cabanatuan",
    "Baguio",
    "La Union",
    "Pangasinan",
    "Dagupan",
    "Iloilo",
    "Bacolod",
    "Cebu",
    "Mandaue",
    "Lapu-Lapu",
    "Tagbilaran",
    "Davao",
    "Tagum",
    "General Santos",
    "Cagayan de Oro",
    "Iligan",
    "Zamboanga",
    "Butuan",
    "Tacloban",
    "Ormoc",
    "Legazpi",
    "Naga",
    "Puerto Princesa",
    "Sto. Nino",
    "Sta. Mesa",
    "San Mateo",
    "Rodriguez",
    "Valenzuela",
    "Malabon",
    "Navotas",
)
FEATURES = (
    "Riverbanks",
    "Bayside",
    "Hillside",
    "Uptown",
    "Heights",
    "Gateway",
    "Crossing",
    "Harbor",
    "Central",
    "North",
    "South",
    "East",
    "West",
    "Poblacion",
    "Coastal",
    "Riverside",
)
FACILITIES = (
    "Flood Control",
    "Bridge Rehabilitation",
    "Road Widening",
    "School Building",
    "Drainage Improvement",
    "Water Supply System",
    "Seawall",
    "Public Market",
    "Health Center",
    "Bypass Road",
    "Pumping Station",
    "Slope Protection",
    "Multi-Purpose Hall",
    "Farm-to-Market Road",
    "Diversion Road",
    "Box Culvert",
    "Housing Development",
    "Warehouse Construction",
    "Barangay Hall",
    "Covered Court",
)
PHASES = ("", " Phase 1", " Phase 2", " Phase 3", " Package A", " Package B")
COST_LINES = (
    "Diesel",
    "Gasoline",
    "Cement",
    "Rebar",
    "Gravel",
    "Sand",
    "Asphalt",
    "Formworks",
    "Labor",
    "Equipment Rental",
    "Crane Rental",
    "Trucking",
    "Hauling",
    "Permits",
    "Insurance",
    "Safety Gear",
    "Scaffolding",
    "Electrical Works",
    "Plumbing Works",
    "Paint",
    "Lumber",
    "Hollow Blocks",
    "Steel Plates",
    "Geotextile",
    "Pipes",
    "Meals",
    "Transportation",
    "Office Supplies",
    "Survey",
    "Testing",
    "Mobilization",
    "Demobilization",
    "Salaries",
    "Overtime",
    "Subcontractor",
    "Retention",
    "Advances",
    "Collections",
    "Progress Billing",
    "Loan Proceeds",
    "Interest",
    "Bank Charges",
    "Taxes",
    "Utilities",
    "Rent",
    "Maintenance",
)
QUALIFIERS = (
    "",
    "Site",
    "Project",
    "Main",
    "Additional",
    "Emergency",
    "Monthly",
    "Regular",
    "Contract",
    "Direct",
    "Indirect",
    "Field",
    "Other",
)
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


@dataclass(frozen=True, slots=True)
class DemoVocabulary:
    projects: list[tuple[str, str]]  # (name, location)
    expense_categories: list[str]
    cashflow_categories: list[str]
    expense_files: list[str]
    cashflow_files: list[str]


SHOWCASE_PROJECT = ("Marikina Riverbanks Development Phase 2", "Marikina, Philippines")
"""Always in the demo, so the README's matching example has something to find."""


def project_names(count: int, seed: int = 7) -> list[tuple[str, str]]:
    """``count`` distinct (project name, location) pairs, the showcase project first."""
    rng = random.Random(seed)
    seen: set[str] = {SHOWCASE_PROJECT[0]}
    out: list[tuple[str, str]] = [SHOWCASE_PROJECT]
    while len(out) < count:
        place = rng.choice(PLACES)
        feature = rng.choice(FEATURES) + " " if rng.random() < 0.5 else ""
        name = f"{place} {feature}{rng.choice(FACILITIES)}{rng.choice(PHASES)}"
        if name not in seen:
            seen.add(name)
            out.append((name, f"{rng.choice(PLACES)}, Philippines"))
    return out


def categories(count: int, seed: int = 11) -> list[str]:
    """``count`` distinct cost categories: the plain cost lines ("Diesel", "Cement") first, as
    every chart of accounts has them, then qualified ones ("Site Diesel", "Monthly Rent")."""
    rng = random.Random(seed)
    qualified = [f"{q} {line}" for q in QUALIFIERS if q for line in COST_LINES]
    rng.shuffle(qualified)
    combos = list(COST_LINES) + qualified
    extra = (f"{combos[i % len(combos)]} {i // len(combos) + 1}" for i in range(count))
    return (combos + list(extra))[:count]


def file_names(count: int, kind: str, seed: int = 13) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    for index in range(count):
        year = 2021 + index // 12 % 5
        month = MONTHS[index % 12]
        suffix = rng.choice((".xlsx", ".xlsx", ".csv"))
        out.append(f"{kind}_{month}_{year}_{index:03d}{suffix}")
    return out


def demo_vocabulary(
    projects: int = 1000, category_count: int = 500, file_count: int = 200
) -> DemoVocabulary:
    """The demo's seed: 1,000 projects, 500 categories, 200 files by default."""
    cats = categories(category_count)
    half = category_count // 2
    return DemoVocabulary(
        projects=project_names(projects),
        expense_categories=cats[: half + 50],
        cashflow_categories=cats[half - 50 :],  # 100 shared by both lists, as in real books
        expense_files=file_names(file_count // 2, "Expenses"),
        cashflow_files=file_names(file_count - file_count // 2, "CashFlow"),
    )
