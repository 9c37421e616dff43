"""Shared primitives of the record builders: types, Faker value pools, fast random helpers.

Faker is used once per seed to build small pools (names, companies, addresses, words); builders then
combine values from the pools with a seeded ``random.Random`` (the helpers below avoid the slower
``choice``/``randint`` on the hot path).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import Any

from faker import Faker

Record = dict[str, Any]
Builder = Callable[[random.Random, "Pools", int, int, int], Record]

_QBE_ID_BASE = 0x80000000
_YEAR_MS = 365 * 24 * 3600 * 1000
_MONTH_MS = 30 * 24 * 3600 * 1000


class Pools:
    """Value pools built once per seed with Faker."""

    def __init__(self, seed: int) -> None:
        fake = Faker("en_US")
        fake.seed_instance(seed)
        self.first = [fake.first_name() for _ in range(300)]
        self.last = [fake.last_name() for _ in range(300)]
        self.company = [fake.company() for _ in range(400)]
        self.street = [fake.street_address() for _ in range(400)]
        self.city = [fake.city() for _ in range(200)]
        self.state = [fake.state_abbr() for _ in range(50)]
        self.postcode = [fake.postcode() for _ in range(300)]
        self.phone = [fake.numerify("(###) ###-####") for _ in range(300)]
        self.domain = [fake.free_email_domain() for _ in range(20)]
        self.words = [fake.word() for _ in range(400)]
        self.sentences = [fake.sentence(nb_words=6) for _ in range(200)]
        self.products = [f"{fake.word().title()} {fake.word().title()}" for _ in range(300)]


@functools.lru_cache(maxsize=4)
def pools(seed: int) -> Pools:
    return Pools(seed)


def _pick(r: random.Random, seq: list[Any]) -> Any:
    return seq[int(r.random() * len(seq))]


def _int(r: random.Random, low: int, high: int) -> int:
    """Uniform integer in ``[low, high]`` (faster than ``randint``)."""
    return low + int(r.random() * (high - low + 1))


def _money(r: random.Random, low: float = 20.0, high: float = 5000.0) -> float:
    return round(low + r.random() * (high - low), 2)


def _ref(r: random.Random, p: Pools, n: int) -> dict[str, str]:
    i = _int(r, 1, max(n, 1))
    return {"value": str(i), "name": f"{p.last[i % 300]}, {p.first[i % 300]}"}


def _email(r: random.Random, p: Pools, first: str, last: str) -> str:
    return f"{first.lower()}.{last.lower()}{_int(r, 1, 999)}@{_pick(r, p.domain)}"


_CURRENCIES = [
    ("USD", "United States Dollar"),
    ("EUR", "Euro"),
    ("GBP", "British Pound Sterling"),
    ("CAD", "Canadian Dollar"),
    ("AUD", "Australian Dollar"),
    ("JPY", "Japanese Yen"),
    ("CHF", "Swiss Franc"),
    ("MXN", "Mexican Peso"),
    ("INR", "Indian Rupee"),
    ("SEK", "Swedish Krona"),
]
