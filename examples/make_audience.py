"""Regenerate the example audience CSVs (deterministic; run from the repo root)."""

from __future__ import annotations

import random
from pathlib import Path

FIRST = ["Ana", "Ben", "Chloé", "Dmitri", "Emeka", "Fatima", "Guo", "Hana", "Ivan", "Jonas",
         "Kofi", "Lea", "Mateo", "Noor", "Olga", "Priya", "Quinn", "Rosa", "Sven", "Yuki"]
REGIONS = ["north", "south", "east", "west"]
TIERS = ["bronze", "silver", "gold"]
PRODUCTS = ["sneaker", "bottle", "mug"]
CATEGORIES = ["running", "outdoor", "coffee", "fitness"]


def main() -> None:
    rng = random.Random(7)
    out = Path(__file__).parent / "audiences"
    out.mkdir(exist_ok=True)
    lines = ["customer_id,first_name,email,region,loyalty_tier,favourite_category,"
             "last_product,spend_90d,opted_in"]
    for i in range(1, 241):
        name = rng.choice(FIRST)
        lines.append(
            f"C{i:05d},{name},{name.lower()}.{i}@example.com,{rng.choice(REGIONS)},"
            f"{rng.choices(TIERS, weights=[5, 3, 1])[0]},{rng.choice(CATEGORIES)},"
            f"{rng.choice(PRODUCTS)},{rng.uniform(5, 400):.2f},{rng.random() > 0.1}"
        )
    (out / "northwind_customers.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
