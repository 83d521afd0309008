"""drop-lite: procedural DROP-style reading comprehension (numbers, dates, names; token-F1 scored).

DROP itself is not available offline. Each item is a short generated passage (a football game, a
town's history, a census paragraph) and one question that needs discrete reasoning over it:
counting, differences, comparisons, date arithmetic or span lookup. Item `idx` of seed `s` is a
pure function of `(s, idx)`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from agentmeta.eval.loaders import stable_seed
from agentmeta.eval.types import Sample

TEAMS = [
    "Bears",
    "Falcons",
    "Ravens",
    "Chargers",
    "Broncos",
    "Lions",
    "Jets",
    "Saints",
    "Titans",
    "Colts",
    "Eagles",
    "Packers",
    "Rams",
    "Bills",
    "Giants",
    "Vikings",
]
FIRST = [
    "Aaron",
    "Maria",
    "Jamal",
    "Elena",
    "Victor",
    "Priya",
    "Tomas",
    "Grace",
    "Omar",
    "Lena",
    "Hugo",
    "Nadia",
    "Felix",
    "Irene",
    "Kofi",
    "Sofia",
    "Marcus",
    "Yuki",
    "Dmitri",
    "Chloe",
]
LAST = [
    "Walker",
    "Okafor",
    "Lindqvist",
    "Moreno",
    "Castillo",
    "Nakamura",
    "Fischer",
    "Dubois",
    "Reyes",
    "Haddad",
    "Novak",
    "Brennan",
    "Kowalski",
    "Adeyemi",
    "Santos",
    "Ivanova",
]
TOWNS = [
    "Millbrook",
    "Ashford",
    "Carrow",
    "Dunmore",
    "Eastvale",
    "Fairhaven",
    "Glenwood",
    "Harlow",
    "Kestrel",
    "Larkspur",
    "Marwick",
    "Northam",
]
MONTHS = [
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
]
Item = tuple[str, str, str, str]  # passage, question, answer, question type


def _name(rng: random.Random, used: set[str]) -> str:
    while True:
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        if name not in used:
            used.add(name)
            return name


def _football(rng: random.Random) -> Item:
    home, away = rng.sample(TEAMS, 2)
    used: set[str] = set()
    runner, receiver, kicker_h, kicker_a = (_name(rng, used) for _ in range(4))
    td1, td2 = rng.sample(range(2, 60), 2)
    fg1, fg2, fg3 = rng.sample(range(20, 56), 3)
    week = rng.randint(1, 17)
    home_pts = 7 + 7 + 3 + 3
    away_pts = 3 + rng.choice([0, 7])
    away_td = away_pts == 10
    passage = (
        f"In week {week}, the {home} hosted the {away}. {runner} opened the scoring with a {td1}-yard "
        f"touchdown run in the first quarter. The {away} answered when {kicker_a} made a {fg1}-yard field goal. "
        f"In the second quarter, {kicker_h} kicked a {fg2}-yard field goal, and {receiver} caught a {td2}-yard "
        f"touchdown pass before halftime. "
        + (f"The {away} scored their only touchdown in the third quarter. " if away_td else "")
        + f"{kicker_h} closed the game with a {fg3}-yard field goal, and the {home} won {home_pts}-{away_pts}."
    )
    longest_td = runner if td1 > td2 else receiver
    questions: list[tuple[str, str, str]] = [
        ("Who scored the longest touchdown of the game?", longest_td, "span"),
        (
            "How many yards longer was the longest field goal than the shortest one?",
            str(max(fg1, fg2, fg3) - min(fg1, fg2, fg3)),
            "difference",
        ),
        (f"How many points did the {home} win by?", str(home_pts - away_pts), "difference"),
        (f"How many field goals did {kicker_h} kick?", "2", "count"),
        ("How many total yards of touchdowns were scored by the named players?", str(td1 + td2), "sum"),
        ("Which team made the first field goal of the game?", f"the {away}", "span"),
    ]
    q, a, kind = rng.choice(questions)
    return passage, q, a, kind


def _history(rng: random.Random) -> Item:
    used: set[str] = set()
    founder, mayor = _name(rng, used), _name(rng, used)
    town = rng.choice(TOWNS)
    y_found = rng.randint(1650, 1850)
    y_rail = y_found + rng.randint(10, 80)
    y_fire = y_rail + rng.randint(3, 40)
    month, day = rng.choice(MONTHS), rng.randint(1, 28)
    pop1, growth = rng.randint(300, 4000), rng.randint(200, 9000)
    pop2 = pop1 + growth
    passage = (
        f"{town} was founded by {founder} in {y_found}. The railway reached the town in {y_rail}, and its "
        f"population grew from {pop1:,} to {pop2:,} over the following decades. On {month} {day}, {y_fire}, "
        f"a fire destroyed much of the market square; {mayor}, then mayor, led the rebuilding, which took "
        f"{rng.randint(2, 9)} years."
    )
    questions = [
        (f"How many years after {town} was founded did the railway arrive?", str(y_rail - y_found), "date"),
        ("How many people did the population grow by?", str(growth), "difference"),
        ("Who led the rebuilding after the fire?", mayor, "span"),
        ("In which year was the market square destroyed by fire?", str(y_fire), "date"),
        (f"Who founded {town}?", founder, "span"),
        ("In what month did the fire happen?", month, "span"),
        ("How many years passed between the founding and the fire?", str(y_fire - y_found), "date"),
    ]
    q, a, kind = rng.choice(questions)
    return passage, q, a, kind


def _census(rng: random.Random) -> Item:
    year = rng.choice([1990, 2000, 2010, 2020])
    people = rng.randint(5_000, 90_000)
    households = people // rng.randint(2, 4)
    families = int(households * rng.uniform(0.55, 0.8))
    under18 = round(rng.uniform(18, 32), 1)
    over65 = round(rng.uniform(9, 22), 1)
    passage = (
        f"As of the census of {year}, there were {people:,} people, {households:,} households, and "
        f"{families:,} families residing in the county. {under18}% of the population was under the age of 18 "
        f"and {over65}% was 65 years of age or older."
    )
    questions = [
        ("How many more households were there than families?", str(households - families), "difference"),
        (
            "What percent of the population was not under the age of 18?",
            f"{round(100 - under18, 1):g}",
            "percent",
        ),
        (
            "Were there more people under the age of 18 or aged 65 or older?",
            "under the age of 18" if under18 > over65 else "65 years of age or older",
            "comparison",
        ),
        ("How many households were not families?", str(households - families), "difference"),
        ("In which year was the census taken?", str(year), "date"),
    ]
    q, a, kind = rng.choice(questions)
    return passage, q, a, kind


GENERATORS: dict[str, Callable[[random.Random], Item]] = {
    "football": _football,
    "history": _history,
    "census": _census,
}


def generate(seed: int, idx: int) -> Sample:
    """Item `idx` of the drop-lite stream of `seed`."""
    rng = random.Random(stable_seed("drop-lite", seed, idx))
    kind = rng.choice(sorted(GENERATORS))
    passage, question, answer, qtype = GENERATORS[kind](rng)
    text = f"Passage: {passage}\n\nQuestion: {question}\nAnswer with a number, a date or a short span from the passage."
    return Sample(
        id=f"drop-lite/{seed}/{idx}",
        input=text,
        target=answer,
        metadata={"passage_kind": kind, "question_type": qtype},
    )
