"""Embedded live-commerce simulator: daily batches with a hidden, text-driven ground truth.

Users hold latent interests over *text attributes* of products (category, brand, material, colour, style) and a price
sensitivity, so item text carries the signal a text model can learn. Hosts with category personas run rooms on a daily
schedule; only products shown in a live room get impressions; an impression -> click -> add_to_cart -> purchase funnel
is driven by the hidden utility; consumables are repurchased; comments echo the commenter's interests. Drift scenarios
change one aspect of the world from a chosen day on. The truth (preferences per phase, item attributes, prices, hosts)
is stored as parquet + JSON so `oracle_scores` can compute the expected utility for any day.

Randomness comes from three independent seeded streams (world, drift, per-day), so for one seed every scenario
produces byte-identical tables before its drift day.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from operator import attrgetter
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from pydantic import ValidationError

from liveloop.config import SimulateConfig
from liveloop.data.batches import write_batch

TRUTH_META = "truth.json"
TRUTH_ITEMS = "items.parquet"
TRUTH_HOSTS = "hosts.parquet"


class SimulationError(ValueError):
    """A simulator argument is invalid or the output would overwrite existing data."""


# ----------------------------------------------------------------------------------------------------------- vocabulary
@dataclass(frozen=True)
class CategorySpec:
    name: str
    nouns: tuple[str, ...]
    brands: tuple[str, ...]
    materials: tuple[str, ...]  # material, ingredient or flavour: whatever the category's shoppers care about
    sizes: tuple[str, ...]
    price_range: tuple[float, float]
    consumable: bool  # bought again and again (drives repeat purchases)
    has_colour: bool  # colour is part of the product text (and of the utility) only where it makes sense


BASE_CATEGORIES: tuple[CategorySpec, ...] = (
    CategorySpec("beauty", ("serum", "lipstick", "face cream", "sunscreen", "cleanser", "eyeshadow palette",
                            "sheet mask", "perfume"), ("Lumina", "Velvetia", "Aurelle", "Dewdrop", "Rosewater Lab"),
                 ("hyaluronic", "vitamin C", "retinol", "aloe", "rosehip"), ("30ml", "50ml", "100ml"),
                 (8.0, 70.0), True, False),
    CategorySpec("fashion", ("dress", "hoodie", "blazer", "jeans", "skirt", "trench coat", "sweater", "t-shirt"),
                 ("Northline", "Ivory & Co", "Urban Fable", "Maison Kite", "Drift Denim"),
                 ("cotton", "linen", "wool", "denim", "silk", "cashmere"), ("XS", "S", "M", "L", "XL"),
                 (15.0, 160.0), False, True),
    CategorySpec("electronics", ("wireless earbuds", "phone case", "power bank", "smartwatch", "bluetooth speaker",
                                 "ring light", "charging cable", "tablet stand"),
                 ("Voltix", "Nexa", "Sonora", "Pixelon", "Ampere"),
                 ("aluminium", "silicone", "tempered glass", "carbon fibre"), ("compact", "standard", "pro"),
                 (10.0, 220.0), False, True),
    CategorySpec("home", ("scented candle", "throw blanket", "vase", "bedding set", "storage basket", "table lamp",
                          "cushion cover", "wall clock"),
                 ("Hearthly", "Casa Nube", "Oakroom", "Nordhem", "Willow Lane"),
                 ("ceramic", "oak", "rattan", "velvet", "stoneware"), ("small", "medium", "large"),
                 (8.0, 120.0), False, True),
    CategorySpec("snacks", ("green tea", "dark chocolate", "coffee beans", "granola", "dried mango", "honey",
                            "instant noodles", "protein bar"),
                 ("Golden Leaf", "Mochi Farm", "Roastery 9", "Sunny Orchard", "Kettle & Co"),
                 ("matcha", "salted caramel", "spicy", "vanilla", "wild berry"), ("250g", "500g", "1kg", "12-pack"),
                 (3.0, 40.0), True, False),
    CategorySpec("sports", ("yoga mat", "running shoes", "dumbbells", "resistance bands", "water bottle", "gym bag",
                            "cycling gloves", "leggings"), ("Stride", "Peakform", "Kinetiq", "Trailborn", "Zenfit"),
                 ("neoprene", "mesh", "steel", "recycled polyester", "natural rubber"), ("S", "M", "L", "one size"),
                 (8.0, 140.0), False, True),
    CategorySpec("baby & toys", ("plush toy", "building blocks", "baby bottle", "jigsaw puzzle", "teether",
                                 "picture book", "bath toy", "activity gym"),
                 ("Little Owl", "Bloombee", "Tiny Atlas", "Moonpup", "Kiddo Lab"),
                 ("organic cotton", "beech wood", "BPA-free plastic", "felt"), ("0-6m", "6-12m", "1-3y", "3y+"),
                 (5.0, 60.0), False, True),
    CategorySpec("jewelry", ("necklace", "earrings", "bracelet", "ring", "anklet", "hair clip", "brooch",
                             "watch strap"), ("Aurum", "Petal & Stone", "Lune", "Seraphine", "Opaline"),
                 ("sterling silver", "gold-plated", "pearl", "rose gold", "titanium"),
                 ("adjustable", "16in", "18in", "size 7"), (10.0, 300.0), False, True),
)
# Population share of each base category's fans (the seasonal shift reverses this order).
CATEGORY_POPULARITY = np.array([0.22, 0.2, 0.14, 0.12, 0.11, 0.09, 0.07, 0.05])

# Appears only in the new-category scenario: vocabulary no other category uses.
NEW_CATEGORY = CategorySpec(
    "pet supplies", ("cat tree", "dog harness", "pet fountain", "chew toy", "litter mat", "pet bed", "grooming brush",
                     "aquarium filter"), ("Pawsome", "Furlane", "Whiskerly", "Barkside", "Tailwag"),
    ("catnip", "sisal", "orthopedic foam", "ripstop nylon"), ("kitten", "small breed", "medium breed", "large breed"),
    (6.0, 90.0), False, True)
ALL_CATEGORIES: tuple[CategorySpec, ...] = (*BASE_CATEGORIES, NEW_CATEGORY)

COLOURS = ("black", "white", "ivory", "navy", "sage green", "blush pink", "burgundy", "mustard", "sky blue",
           "charcoal", "lavender", "terracotta")
STYLES = ("minimalist", "vintage", "boho", "streetwear", "classic", "sporty", "kawaii", "luxe")
PRICE_BANDS = ("budget", "mid-range", "premium", "luxury")
HOST_NAMES = ("Mia", "Leo", "Ava", "Kai", "Zoe", "Noah", "Luna", "Ethan", "Isla", "Ryo", "Nina", "Omar", "Sara",
              "Jin", "Elena", "Theo")
CHURN_HOST_NAMES = ("Bea", "Dax", "Fern", "Gus", "Hana", "Ivo", "Juno", "Koa", "Lior", "Maya", "Nico", "Pia")
ROOM_HOOKS = ("new arrivals", "flash deals", "top picks", "restock day", "try-on haul", "Q&A and giveaways")
REGIONS = ("north", "south", "east", "west", "central")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")

# Comment templates: (prefix, slot, suffix); the slot is filled with one of the commenter's favourite attributes.
COMMENT_TEMPLATES = (
    ("do you have this in ", "colour", "?"),
    ("love ", "style", " pieces like this"),
    ("", "brand", " is my favourite brand"),
    ("is the ", "material", " one still available?"),
    ("can you show the ", "noun", " again?"),
    ("how much is the ", "noun", " today?"),
)
# comment-shift: slang, emoji and Spanish code-switching replace the plain English style.
SHIFTED_COMMENT_TEMPLATES = (
    ("necesito algo en ", "colour", " 😍😍"),
    ("", "brand", " porfa!! 🙏"),
    ("quiero el ", "noun", " ya 🔥🔥"),
    ("ese ", "material", " se ve top 💯"),
    ("vibes ", "style", " total ✨ lo quiero"),
)
COMMENT_SLOTS = ("colour", "style", "brand", "material", "noun")

FEATURE_GROUPS = ("category", "brand", "material", "colour", "style")
EVENT_ORDER = {"impression": 0, "comment": 1, "click": 2, "add_to_cart": 3, "purchase": 4}

# Funnel logits over the hidden utility (typically -1..6): an off-interest item (utility ~0) is clicked ~1% of the
# time, a typical shown item (~2.5) ~10%, a strong match (~5) ~50%; carts and purchases follow the same utility.
CLICK_BIAS, CLICK_SLOPE = -4.3, 0.85
CART_BIAS, CART_SLOPE = -1.8, 0.45
BUY_BIAS, BUY_SLOPE = -0.8, 0.35
REPEAT_BOOST = 2.0  # extra logit for a consumable the user already bought (replenishment)
OWNED_PENALTY = -3.0  # a durable product the user already owns is rarely bought again
EXPOSURE_SLOPE = 0.4  # the platform's feed shows a room's products in an order that mildly favours the viewer's taste


# ---------------------------------------------------------------------------------------------------------------- world
@dataclass
class _Catalog:
    ids: np.ndarray  # str
    category: np.ndarray  # index into ALL_CATEGORIES
    brand: np.ndarray  # str
    material: np.ndarray
    colour: np.ndarray  # "none" where the category has no colour
    style: np.ndarray
    size: np.ndarray
    noun: np.ndarray
    prices: np.ndarray  # [phase, item]
    ref_price: np.ndarray  # category reference price: the utility's price term is log(price / ref_price)
    quality: np.ndarray
    first_seen_day: np.ndarray  # day index (negative = before the run)
    title: np.ndarray
    description: np.ndarray


@dataclass
class _Hosts:
    ids: np.ndarray
    names: np.ndarray
    persona: np.ndarray  # [phase, host] category index
    active_from: np.ndarray  # day index
    active_to: np.ndarray  # exclusive day index


@dataclass
class _Users:
    ids: np.ndarray
    weights: np.ndarray  # [phase, user, feature] float32
    price_sensitivity: np.ndarray
    activity: np.ndarray
    favourite_host: np.ndarray
    favourites: dict[str, np.ndarray]  # comment slot -> str per user
    profile: np.ndarray  # str or None


@dataclass
class _World:
    features: list[str]
    item_features: np.ndarray  # [item, group] feature index
    catalog: _Catalog
    hosts: _Hosts
    users: _Users


def _feature_names() -> list[str]:
    groups = {
        "category": [c.name for c in ALL_CATEGORIES],
        "brand": [b for c in ALL_CATEGORIES for b in c.brands],
        "material": list(dict.fromkeys(m for c in ALL_CATEGORIES for m in c.materials)),
        "colour": ["none", *COLOURS],
        "style": list(STYLES),
    }
    return [f"{group}={value}" for group in FEATURE_GROUPS for value in groups[group]]


def _item_feature_index(features: list[str], columns: dict[str, np.ndarray]) -> np.ndarray:
    """[item, group] feature indices from attribute names (shared by the simulator and the oracle)."""
    lookup = pd.Series(np.arange(len(features)), index=features)
    return np.stack([lookup.loc[[f"{g}={v}" for v in columns[g]]].to_numpy() for g in FEATURE_GROUPS], axis=1)


def _utility(weights, price_sensitivity, item_features, log_rel_price, quality, users, items) -> np.ndarray:
    """Hidden expected utility for broadcastable user/item index arrays: interests over text attributes + price."""
    out = quality[items] - price_sensitivity[users] * log_rel_price[items]
    for group in range(item_features.shape[1]):
        out = out + weights[users, item_features[items, group]]
    return out


def _per_category(categories: np.ndarray, u: np.ndarray, options_of: Callable[[CategorySpec], tuple]) -> np.ndarray:
    """One option per row from its own category's list (options_of(spec)), picked by the uniform draw u."""
    out = np.empty(len(categories), dtype=object)
    for k, spec in enumerate(ALL_CATEGORIES):  # a loop over the 9 categories, not over rows
        in_k = categories == k
        options = np.array(options_of(spec), dtype=object)
        out[in_k] = options[(u[in_k] * len(options)).astype(int)]
    return out


def _draw_items(rng: np.random.Generator, categories: np.ndarray, first_seen_day: np.ndarray, first_index: int) -> dict:
    """Product attributes for the given category indices; title and description are rendered from them."""
    n = len(categories)
    u = rng.random((6, n))
    noun = _per_category(categories, u[0], attrgetter("nouns"))
    brand = _per_category(categories, u[1], attrgetter("brands"))
    material = _per_category(categories, u[2], attrgetter("materials"))
    size = _per_category(categories, u[3], attrgetter("sizes"))
    colour = _per_category(categories, u[4], lambda spec: COLOURS if spec.has_colour else ("none",))
    low, high = (np.array([c.price_range[j] for c in ALL_CATEGORIES])[categories] for j in (0, 1))
    price = np.round(np.exp(np.log(low) + u[5] * np.log(high / low)), 2)
    ref_price = np.sqrt(low * high)
    style = np.array(STYLES, dtype=object)[rng.integers(0, len(STYLES), n)]
    band = np.array(PRICE_BANDS, dtype=object)[(u[5] * len(PRICE_BANDS)).astype(int)]
    category_name = np.array([c.name for c in ALL_CATEGORIES], dtype=object)[categories]
    has_colour = colour != "none"
    title = brand + " " + style + " " + np.where(has_colour, colour + " ", "") + material + " " + noun
    description = (
        np.char.capitalize(noun.astype(str)).astype(object) + " in " + material + " by " + brand + ". "
        + np.char.capitalize(style.astype(str)).astype(object) + " style, " + np.where(has_colour, colour + ", ", "")
        + "size " + size + ". A " + band + " " + category_name + " pick."
    )
    description[rng.random(n) < 0.05] = None  # some sellers leave the description empty
    return dict(
        ids=np.array([f"p{first_index + j:06d}" for j in range(n)], dtype=object), category=categories,
        brand=brand, material=material, colour=colour, style=style, size=size, noun=noun, price=price,
        ref_price=ref_price, quality=rng.normal(0.0, 0.3, n), first_seen_day=first_seen_day, title=title,
        description=description,
    )


def _build_catalog(cfg: SimulateConfig, world_rng, drift_rng, drift_day: int | None) -> _Catalog:
    n_late = int(round(cfg.new_item_fraction * cfg.n_items)) if cfg.days > 1 else 0
    first_seen = np.concatenate(
        [-world_rng.integers(1, 120, cfg.n_items - n_late), np.sort(world_rng.integers(1, cfg.days, n_late))]
    )
    item_share = 0.5 * CATEGORY_POPULARITY + 0.5 / len(BASE_CATEGORIES)
    base = _draw_items(world_rng, world_rng.choice(len(BASE_CATEGORIES), cfg.n_items, p=item_share), first_seen, 1)
    parts = [base]
    if cfg.scenario == "new-category":
        n_new = max(8, cfg.n_items // 8)
        later = drift_rng.random(n_new) < 0.3  # most launch on the drift day, the rest over the following days
        launch = drift_day + later * drift_rng.integers(0, cfg.days - drift_day, n_new)
        new_index = len(ALL_CATEGORIES) - 1
        parts.append(_draw_items(drift_rng, np.full(n_new, new_index), np.sort(launch), cfg.n_items + 1))
    merged = {key: np.concatenate([p[key] for p in parts]) for key in base}
    prices = np.stack([merged["price"], merged["price"]])
    if cfg.scenario == "price-shock":
        shocked = drift_rng.choice(len(BASE_CATEGORIES), 3, replace=False)
        hit = np.isin(merged["category"], shocked)
        prices[1, hit] = np.round(prices[1, hit] * drift_rng.uniform(1.5, 2.0, hit.sum()), 2)
    del merged["price"]
    return _Catalog(prices=prices, **merged)


def _build_hosts(cfg: SimulateConfig, world_rng, drift_rng, drift_day: int | None) -> _Hosts:
    n = cfg.n_hosts
    n_base = len(BASE_CATEGORIES)
    extra = world_rng.choice(n_base, max(0, n - n_base), p=CATEGORY_POPULARITY)
    persona = np.concatenate([world_rng.permutation(n_base), extra])[:n]
    names = [HOST_NAMES[j % len(HOST_NAMES)] + ("" if j < len(HOST_NAMES) else f" {j // len(HOST_NAMES) + 1}")
             for j in range(n)]
    active_from, active_to = np.zeros(n, dtype=int), np.full(n, cfg.days, dtype=int)
    persona_after = persona.copy()
    if cfg.scenario == "new-category":
        persona_after[drift_rng.choice(n, max(1, n // 4), replace=False)] = len(ALL_CATEGORIES) - 1
    if cfg.scenario == "host-churn":
        leaving = drift_rng.choice(n, max(1, int(round(0.6 * n))), replace=False)
        active_to[leaving] = drift_day
        joining = len(leaving)
        newcomer_persona = drift_rng.choice(n_base, joining, p=CATEGORY_POPULARITY)
        names += [CHURN_HOST_NAMES[j % len(CHURN_HOST_NAMES)]
                  + ("" if j < len(CHURN_HOST_NAMES) else f" {j // len(CHURN_HOST_NAMES) + 1}") for j in range(joining)]
        persona = np.concatenate([persona, newcomer_persona])
        persona_after = np.concatenate([persona_after, newcomer_persona])
        active_from = np.concatenate([active_from, np.full(joining, drift_day)])
        active_to = np.concatenate([active_to, np.full(joining, cfg.days)])
    total = len(names)
    return _Hosts(
        ids=np.array([f"host-{j + 1:03d}" for j in range(total)], dtype=object), names=np.array(names, dtype=object),
        persona=np.stack([persona, persona_after]), active_from=active_from, active_to=active_to,
    )


def _build_users(cfg: SimulateConfig, features: list[str], hosts: _Hosts, world_rng, drift_rng) -> _Users:
    n = cfg.n_users
    col = {name: j for j, name in enumerate(features)}
    category_cols = np.array([col[f"category={c.name}"] for c in ALL_CATEGORIES])
    weights = world_rng.normal(0.0, 0.25, (n, len(features))).astype(np.float32)
    weights[:, col["colour=none"]] = 0.0  # items without a colour get no colour term
    rows = np.arange(n)
    n_base = len(BASE_CATEGORIES)
    first = world_rng.choice(n_base, n, p=CATEGORY_POPULARITY)
    second = world_rng.choice(n_base, n, p=CATEGORY_POPULARITY)
    fav_style = world_rng.integers(0, len(STYLES), n)
    fav_colour = world_rng.integers(0, len(COLOURS), n)
    pick = world_rng.random((3, n))
    fav_brand = _per_category(first, pick[0], attrgetter("brands"))
    fav_material = _per_category(first, pick[1], attrgetter("materials"))
    fav_noun = _per_category(first, pick[2], attrgetter("nouns"))
    np.add.at(weights, (rows, category_cols[first]), 2.5)
    np.add.at(weights, (rows, category_cols[second]), 1.2)
    weights[rows, [col[f"style={STYLES[s]}"] for s in fav_style]] += 1.2
    weights[rows, [col[f"colour={COLOURS[c]}"] for c in fav_colour]] += 1.0
    weights[rows, [col[f"brand={b}"] for b in fav_brand]] += 1.0
    weights[rows, [col[f"material={m}"] for m in fav_material]] += 0.8
    after = weights.copy()
    if cfg.scenario == "seasonal-shift":
        # Interest mass moves: fans of the most popular category now favour the least popular one, and so on.
        base_cols = category_cols[:n_base]
        after[:, base_cols] = weights[:, base_cols[::-1]]
    if cfg.scenario == "new-category":
        adopters = drift_rng.random(n) < 0.4
        after[adopters, category_cols[-1]] += 2.5
        new_brand_cols = np.array([col[f"brand={b}"] for b in NEW_CATEGORY.brands])
        after[adopters, new_brand_cols[drift_rng.integers(0, len(new_brand_cols), adopters.sum())]] += 1.0
    # Loyalty: each user follows one original host of their favourite category (if there is one).
    original = np.flatnonzero(hosts.active_from == 0)
    favourite_host = original[world_rng.integers(0, len(original), n)]
    choice = world_rng.random(n)
    for k in range(n_base):
        of_k = original[hosts.persona[0, original] == k]
        fans = first == k
        if len(of_k):
            favourite_host[fans] = of_k[(choice[fans] * len(of_k)).astype(int)]
    profile = (np.array(AGE_BANDS, dtype=object)[world_rng.integers(0, len(AGE_BANDS), n)] + ", "
               + np.array(REGIONS, dtype=object)[world_rng.integers(0, len(REGIONS), n)] + " region")
    profile[world_rng.random(n) < 0.25] = None
    width = max(5, len(str(n)))
    return _Users(
        ids=np.array([f"u{j + 1:0{width}d}" for j in range(n)], dtype=object),
        weights=np.stack([weights, after]),
        price_sensitivity=world_rng.lognormal(np.log(0.6), 0.4, n),
        activity=world_rng.gamma(0.8, 1 / 0.8, n),
        favourite_host=favourite_host,
        favourites={
            "colour": np.array(COLOURS, dtype=object)[fav_colour], "style": np.array(STYLES, dtype=object)[fav_style],
            "brand": fav_brand, "material": fav_material, "noun": fav_noun,
        },
        profile=profile,
    )


def _build_world(cfg: SimulateConfig, seed: int, drift_day: int | None) -> _World:
    """World from the seed alone; drift-only parts come from their own stream so pre-drift days never change."""
    world_rng = np.random.default_rng([seed, 0])
    drift_rng = np.random.default_rng([seed, 1])
    features = _feature_names()
    catalog = _build_catalog(cfg, world_rng, drift_rng, drift_day)
    hosts = _build_hosts(cfg, world_rng, drift_rng, drift_day)
    users = _build_users(cfg, features, hosts, world_rng, drift_rng)
    category_names = np.array([c.name for c in ALL_CATEGORIES], dtype=object)
    item_features = _item_feature_index(features, {
        "category": category_names[catalog.category], "brand": catalog.brand, "material": catalog.material,
        "colour": catalog.colour, "style": catalog.style,
    })
    return _World(features=features, item_features=item_features, catalog=catalog, hosts=hosts, users=users)


# ----------------------------------------------------------------------------------------------------------------- days
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _top_k(keys: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest keys per row, best first (Gumbel-top-k = weighted sampling w/o replacement)."""
    return np.argsort(-keys, axis=1, kind="stable")[:, :k]


def _simulate_day(world: _World, cfg: SimulateConfig, seed: int, day: date, day_index: int, phase: int,
                  owned: np.ndarray) -> tuple[dict[str, pd.DataFrame], np.ndarray]:
    """One day's four tables, plus the updated sorted codes (user * n_items + item) of everything bought so far."""
    rng = np.random.default_rng([seed, 2, day_index])
    cat, hosts, users = world.catalog, world.hosts, world.users
    n_items = len(cat.ids)
    weights, log_rel_price = users.weights[phase], np.log(cat.prices[phase] / cat.ref_price)
    consumable = np.array([c.consumable for c in ALL_CATEGORIES])[cat.category]
    day_ns = np.datetime64(day, "ns")

    # Rooms: active hosts go live at different times; each room features a subset of its persona's products.
    available = np.flatnonzero(cat.first_seen_day <= day_index)
    active = np.flatnonzero((hosts.active_from <= day_index) & (day_index < hosts.active_to))
    n_rooms = cfg.rooms_per_day
    room_host = rng.choice(active, n_rooms, replace=n_rooms > len(active))
    room_cat = hosts.persona[phase, room_host]
    on_topic = cat.category[available][None, :] == room_cat[:, None]
    fresh = (day_index - cat.first_seen_day[available]) < 3  # hosts push new arrivals
    keys = np.where(on_topic, 0.0, np.log(0.03)) + fresh[None, :] + rng.gumbel(size=on_topic.shape)
    per_room = min(cfg.items_per_room, len(available))
    room_items = available[_top_k(keys, per_room)]  # [room, slot]
    duration_s = rng.integers(45, 181, n_rooms) * 60
    start_s = 8 * 3600 + (rng.random(n_rooms) * (15 * 3600 - duration_s)).astype(np.int64) // 60 * 60
    end_s = start_s + duration_s

    # Sessions: each visit goes to one room, chosen by category interest and host loyalty.
    visits = rng.poisson(users.activity * cfg.sessions_per_user_per_day)
    s_user = np.repeat(np.arange(len(users.ids)), visits)
    category_cols = np.array([world.features.index(f"category={c.name}") for c in ALL_CATEGORIES])
    room_logits = weights[s_user[:, None], category_cols[room_cat][None, :]] + 1.5 * (
        users.favourite_host[s_user][:, None] == room_host[None, :])
    s_room = np.argmax(room_logits + rng.gumbel(size=room_logits.shape), axis=1)

    # Impressions: the products the viewer sees while in the room.
    candidates = room_items[s_room]
    utility = _utility(weights, users.price_sensitivity, world.item_features, log_rel_price, cat.quality,
                       s_user[:, None], candidates)
    bought_before = np.isin(s_user[:, None].astype(np.int64) * n_items + candidates, owned)
    repeat_logit = bought_before * np.where(consumable[candidates], REPEAT_BOOST, OWNED_PENALTY)
    n_shown = min(cfg.impressions_per_session, per_room)
    shown = _top_k(EXPOSURE_SLOPE * utility + repeat_logit + rng.gumbel(size=utility.shape), n_shown)
    imp_item = np.take_along_axis(candidates, shown, axis=1)
    imp_util = np.take_along_axis(utility, shown, axis=1)
    repeat = np.take_along_axis(repeat_logit, shown, axis=1)

    # Funnel driven by the hidden utility; consumables bought before are replenished, owned durables skipped.
    clicked = rng.random(imp_item.shape) < _sigmoid(CLICK_BIAS + CLICK_SLOPE * imp_util + repeat)
    carted = clicked & (rng.random(imp_item.shape) < _sigmoid(CART_BIAS + CART_SLOPE * imp_util + repeat))
    purchased = carted & (rng.random(imp_item.shape) < _sigmoid(BUY_BIAS + BUY_SLOPE * imp_util + repeat))
    quantity = 1 + rng.poisson(np.where(consumable[imp_item], 0.7, 0.15))

    # Times: inside the room's live window, impression <= click <= cart <= purchase.
    room_start, room_end = start_s[s_room][:, None], end_s[s_room][:, None]
    entry = room_start + (rng.random((len(s_user), 1)) * np.maximum(duration_s[s_room][:, None] - 300, 60))
    imp_t = np.minimum(entry + np.cumsum(rng.uniform(15, 90, imp_item.shape), axis=1), room_end)
    click_t = np.minimum(imp_t + rng.uniform(2, 40, imp_item.shape), room_end)
    cart_t = np.minimum(click_t + rng.uniform(10, 180, imp_item.shape), room_end)
    buy_t = np.minimum(cart_t + rng.uniform(20, 600, imp_item.shape), room_end)

    # Comments: about the product the commenter liked most, in words from their own interests.
    commenting = np.flatnonzero(rng.random(len(s_user)) < cfg.comment_rate)
    shifted = cfg.scenario == "comment-shift" and phase == 1
    templates = SHIFTED_COMMENT_TEMPLATES if shifted else COMMENT_TEMPLATES
    which = rng.integers(0, len(templates), len(commenting))
    prefix, slot, suffix = (np.array(part, dtype=object) for part in zip(*templates))
    favourite = np.stack([users.favourites[s][s_user[commenting]] for s in COMMENT_SLOTS])
    slot_row = np.array([COMMENT_SLOTS.index(s) for s in slot])[which]
    comment_text = prefix[which] + favourite[slot_row, np.arange(len(commenting))] + suffix[which]
    comment_item = imp_item[commenting, np.argmax(imp_util[commenting], axis=1)]
    comment_t = np.minimum(entry[commenting, 0] + rng.uniform(5, 40 * n_shown, len(commenting)),
                           end_s[s_room[commenting]])

    # Flatten every block into one event list, ordered by time (and funnel step at equal times).
    sess = np.broadcast_to(np.arange(len(s_user))[:, None], imp_item.shape)
    price = cat.prices[phase]
    no_comment = np.zeros(len(commenting), dtype=bool)
    blocks = [  # (type, mask over impressions, times, carries quantity and price)
        ("impression", np.ones_like(clicked), imp_t, False), ("click", clicked, click_t, False),
        ("add_to_cart", carted, cart_t, True), ("purchase", purchased, buy_t, True),
    ]
    ev_type = np.concatenate([np.full(m.sum(), name, dtype=object) for name, m, _, _ in blocks]
                             + [np.full(len(commenting), "comment", dtype=object)])
    ev_rank = np.concatenate([np.full(m.sum(), EVENT_ORDER[name]) for name, m, _, _ in blocks]
                             + [np.full(len(commenting), EVENT_ORDER["comment"])])
    ev_ms = (np.concatenate([t[m] for _, m, t, _ in blocks] + [comment_t]) * 1000).astype(np.int64)
    ev_sess = np.concatenate([sess[m] for _, m, _, _ in blocks] + [commenting])
    ev_item = np.concatenate([imp_item[m] for _, m, _, _ in blocks] + [comment_item])
    ev_money = np.concatenate([np.full(m.sum(), money) for _, m, _, money in blocks] + [no_comment])
    ev_qty = np.where(ev_money, np.concatenate([quantity[m] for _, m, _, _ in blocks] + [no_comment]), np.nan)
    ev_text = np.concatenate([np.full(len(ev_type) - len(commenting), None, dtype=object), comment_text])
    order = np.lexsort((ev_rank, ev_ms))
    day_tag = day.isoformat()
    stream_ids = np.array([f"{day_tag}-r{r + 1:03d}" for r in range(n_rooms)], dtype=object)

    events = pd.DataFrame({
        "event_id": day_tag + "-" + pd.Series(np.arange(len(order))).astype(str).str.zfill(7),
        "ts": day_ns + ev_ms[order].astype("timedelta64[ms]"),
        "user_id": users.ids[s_user[ev_sess[order]]],
        "item_id": cat.ids[ev_item[order]],
        "stream_id": stream_ids[s_room[ev_sess[order]]],
        "event_type": ev_type[order],
        "text": ev_text[order],
        "quantity": ev_qty[order],
        "price": np.where(ev_money[order], price[ev_item[order]], np.nan),
    })
    shown_items = np.unique(room_items)
    category_names = np.array([c.name for c in ALL_CATEGORIES], dtype=object)
    items = pd.DataFrame({
        "item_id": cat.ids[shown_items], "title": cat.title[shown_items],
        "description": cat.description[shown_items], "category": category_names[cat.category[shown_items]],
        "brand": cat.brand[shown_items], "price": price[shown_items],
        "first_seen": day_ns + (cat.first_seen_day[shown_items] - day_index).astype("timedelta64[D]"),
    })
    hooks = np.array(ROOM_HOOKS, dtype=object)[rng.integers(0, len(ROOM_HOOKS), n_rooms)]
    streams = pd.DataFrame({
        "stream_id": stream_ids, "host_id": hosts.ids[room_host],
        "title": hosts.names[room_host] + "'s " + category_names[room_cat] + " live: " + hooks,
        "category": category_names[room_cat],
        "start": day_ns + start_s.astype("timedelta64[s]"), "end": day_ns + end_s.astype("timedelta64[s]"),
        "item_ids": [list(cat.ids[row]) for row in room_items],
    })
    active_users = np.unique(s_user)
    user_table = pd.DataFrame({"user_id": users.ids[active_users], "profile": users.profile[active_users]})
    bought_codes = s_user[:, None].astype(np.int64) * n_items + imp_item
    owned = np.union1d(owned, bought_codes[purchased])
    return {"items": items, "streams": streams, "users": user_table, "events": events}, owned


# ---------------------------------------------------------------------------------------------------------- public API
def with_overrides(base: SimulateConfig, **overrides) -> SimulateConfig:
    """`base` with the given fields replaced (None = keep), validated; a bad value raises SimulationError naming it."""
    values = {**base.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return SimulateConfig.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})"
                             for e in exc.errors())
        raise SimulationError(f"bad simulate setting: {problems}") from None


def resolve_drift_day(cfg: SimulateConfig) -> int | None:
    """Day index where the drift starts (None for `stable`); null in the config means the middle of the run."""
    if cfg.drift_day is not None and cfg.drift_day >= cfg.days:
        raise SimulationError(
            f"drift_day {cfg.drift_day} is beyond the run: a {cfg.days}-day run has day indices 0..{cfg.days - 1}"
        )
    if cfg.scenario == "stable":
        return None
    return cfg.days // 2 if cfg.drift_day is None else cfg.drift_day


def _run_description(cfg: SimulateConfig, seed: int, drift_day: int | None) -> dict:
    return {"scenario": cfg.scenario, "seed": seed, "drift_day": drift_day, "start_date": cfg.start_date,
            "days": cfg.days, "config": cfg.model_dump(mode="json")}


def _write_truth(world: _World, run: dict, truth_dir: Path) -> None:
    """Hidden ground truth as parquet + JSON; truth.json is written last, so its presence means the set is complete."""
    truth_dir.mkdir(parents=True, exist_ok=True)
    cat, hosts, users = world.catalog, world.hosts, world.users
    names = np.array([c.name for c in ALL_CATEGORIES], dtype=object)
    start = pd.Timestamp(run["start_date"])
    pd.DataFrame({
        "item_id": cat.ids, "category": names[cat.category], "brand": cat.brand, "material": cat.material,
        "colour": cat.colour, "style": cat.style, "size": cat.size, "noun": cat.noun,
        "price_0": cat.prices[0], "price_1": cat.prices[1], "ref_price": cat.ref_price, "quality": cat.quality,
        "consumable": np.array([c.consumable for c in ALL_CATEGORIES])[cat.category],
        "first_seen": start + pd.to_timedelta(cat.first_seen_day, unit="D"),
    }).to_parquet(truth_dir / TRUTH_ITEMS, index=False)
    pd.DataFrame({
        "host_id": hosts.ids, "name": hosts.names, "persona_0": names[hosts.persona[0]],
        "persona_1": names[hosts.persona[1]], "active_from_day": hosts.active_from, "active_to_day": hosts.active_to,
    }).to_parquet(truth_dir / TRUTH_HOSTS, index=False)
    phases = [{"phase": 0, "from_day_index": 0}]
    if run["drift_day"] is not None:
        phases.append({"phase": 1, "from_day_index": run["drift_day"]})
    for phase in phases:
        phase["users"], phase["price"] = f"users_phase{phase['phase']}.parquet", f"price_{phase['phase']}"
        frame = pd.DataFrame(users.weights[phase["phase"]], columns=world.features)
        frame.insert(0, "user_id", users.ids)
        frame.insert(1, "price_sensitivity", users.price_sensitivity)
        frame.insert(2, "favourite_host", hosts.ids[users.favourite_host])
        frame.to_parquet(truth_dir / phase["users"], index=False)
    meta = {
        **run, "features": world.features, "feature_groups": list(FEATURE_GROUPS), "phases": phases,
        "utility": "sum of the user's weights on the item's category/brand/material/colour/style features"
                   " + item quality - price_sensitivity * ln(price / ref_price), with the phase in force that day",
    }
    tmp = truth_dir / f".{TRUTH_META}.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, truth_dir / TRUTH_META)


def simulate(cfg: SimulateConfig, seed: int, out_dir: Path, truth_dir: Path, *, overwrite: bool = False) -> list[Path]:
    """Write one batch folder per simulated day under out_dir (and the hidden truth under truth_dir).

    Refuses to replace existing day folders, or a truth of a different run, unless overwrite=True: nothing is
    lost silently. Each day is written to a hidden temp folder and renamed, so a crash never leaves a half batch.
    """
    out_dir, truth_dir = Path(out_dir), Path(truth_dir)
    drift_day = resolve_drift_day(cfg)
    try:
        start = date.fromisoformat(cfg.start_date)
    except ValueError:
        raise SimulationError(f"start_date {cfg.start_date!r} is not a calendar day (YYYY-MM-DD)") from None
    days = [start + timedelta(days=d) for d in range(cfg.days)]
    targets = [out_dir / d.isoformat() for d in days]
    run = _run_description(cfg, seed, drift_day)
    if not overwrite:
        taken = [str(t) for t in targets if t.exists()]
        if taken:
            raise SimulationError(f"{len(taken)} day folder(s) already exist, e.g. {taken[0]}; "
                                  "choose another output folder or pass overwrite (--overwrite)")
        meta_path = truth_dir / TRUTH_META
        if meta_path.exists():
            previous = json.loads(meta_path.read_text())
            if {k: previous.get(k) for k in run} != run:
                raise SimulationError(f"{truth_dir} holds the truth of a different simulator run "
                                      f"(scenario {previous.get('scenario')}, seed {previous.get('seed')}); "
                                      "choose another truth folder or pass overwrite (--overwrite)")
    world = _build_world(cfg, seed, drift_day)
    _write_truth(world, run, truth_dir)
    owned = np.empty(0, dtype=np.int64)
    out_dir.mkdir(parents=True, exist_ok=True)
    for day_index, (day, target) in enumerate(zip(days, targets)):
        phase = int(drift_day is not None and day_index >= drift_day)
        tables, owned = _simulate_day(world, cfg, seed, day, day_index, phase, owned)
        tmp = out_dir / f".{target.name}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        meta = {"day": day.isoformat(), "source": "simulator", "scenario": cfg.scenario, "seed": seed,
                "drift_day": drift_day, "day_index": day_index}
        write_batch(tables, tmp, meta=meta)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    return targets


def oracle_scores(truth_dir: Path, user_ids: list[str], item_ids: list[str], day: date) -> np.ndarray:
    """[len(user_ids), len(item_ids)] hidden expected utility on `day` (drift phase and prices in force that day)."""
    truth_dir = Path(truth_dir)
    meta_path = truth_dir / TRUTH_META
    if not meta_path.exists():
        raise SimulationError(f"no simulator truth in {truth_dir} (truth.json missing): run `liveloop simulate` first")
    meta = json.loads(meta_path.read_text())
    day_index = (pd.Timestamp(day).normalize() - pd.Timestamp(meta["start_date"])).days
    in_force = [p for p in meta["phases"] if p["from_day_index"] <= day_index]
    phase = in_force[-1] if in_force else meta["phases"][0]
    users = pd.read_parquet(truth_dir / phase["users"]).set_index("user_id")
    items = pd.read_parquet(truth_dir / TRUTH_ITEMS).set_index("item_id")
    for kind, wanted, known in (("user", user_ids, users.index), ("item", item_ids, items.index)):
        unknown = pd.Index(wanted).difference(known)
        if len(unknown):
            raise SimulationError(f"{len(unknown)} {kind} id(s) unknown to the simulator truth in {truth_dir}, "
                                  f"e.g. {list(unknown[:3])}")
    users, items = users.loc[list(user_ids)], items.loc[list(item_ids)]
    features = meta["features"]
    item_features = _item_feature_index(features, {g: items[g].to_numpy() for g in FEATURE_GROUPS})
    log_rel_price = np.log(items[phase["price"]].to_numpy() / items["ref_price"].to_numpy())
    return _utility(users[features].to_numpy(np.float32), users["price_sensitivity"].to_numpy(), item_features,
                    log_rel_price, items["quality"].to_numpy(), np.arange(len(users))[:, None],
                    np.arange(len(items))[None, :])
