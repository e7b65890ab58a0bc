"""The synthetic catalog: a category tree (top categories -> sub-types -> items) with word banks.

Each node has its own vocabulary: a top category has a few shared words, a sub-type has a head
noun and descriptors, brands belong to one top category and a few of its sub-types, and each
item's title / features / description are made from those words plus attributes (colour, size,
count, material, voltage). So items under one sub-type share words, and a text embedding of
the items clusters by top category, then by sub-type.

The first 8 top categories x 8 sub-types come from a hand-written bank that reads like real
product words; beyond it, names and vocabularies are pronounceable generated words.
Used by :mod:`sapo_pipeline.data.generator`; nothing here writes files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sapo_pipeline.data.config import GeneratorConfig

# (top category, its shared words, [(sub-type, head noun, descriptors, attribute kinds)])
_BANK: list[tuple[str, str, list[tuple[str, str, str, str]]]] = [
    ("Writing Instruments", "writing ink smooth everyday school office", [
        ("Gel Pens", "Gel Pen", "retractable rollerball quick-dry fine-point smear-proof vivid", "color count"),
        ("Ballpoint Pens", "Ballpoint Pen", "medium-point click comfort-grip bold classic refillable", "color count"),
        ("Mechanical Pencils", "Mechanical Pencil", "lead eraser drafting precision refillable sketching", "color count"),
        ("Highlighters", "Highlighter", "chisel-tip fluorescent bright no-bleed pastel marking", "color count"),
        ("Permanent Markers", "Permanent Marker", "waterproof fade-resistant ultra-fine quick-drying industrial bold", "color count"),
        ("Fountain Pens", "Fountain Pen", "nib converter calligraphy cartridge iridium elegant", "color material"),
        ("Dry Erase Markers", "Dry Erase Marker", "low-odor whiteboard erasable chisel magnetic classroom", "color count"),
        ("Colored Pencils", "Colored Pencil", "artist blendable pre-sharpened coloring soft-core vibrant", "count"),
    ]),
    ("Paper Products", "paper sheets ruled acid-free bright stationery", [
        ("Spiral Notebooks", "Spiral Notebook", "college-ruled wirebound perforated subject poly-cover journal", "color size"),
        ("Sticky Notes", "Sticky Note", "adhesive repositionable cube pads neon self-stick", "color count"),
        ("Copy Paper", "Copy Paper", "multipurpose printer laser inkjet 20lb ream", "count size"),
        ("Index Cards", "Index Card", "blank flashcards ringed recipe study lined", "color count"),
        ("Legal Pads", "Legal Pad", "yellow perforated glued-top canary wide-ruled writing", "count size"),
        ("Envelopes", "Envelope", "security self-seal gummed kraft mailing window", "count size"),
        ("Composition Books", "Composition Book", "marble sewn-binding wide-ruled hardcover student journal", "color count"),
        ("Graph Paper", "Graph Paper", "grid quad engineering drafting squares metric", "count size"),
    ]),
    ("Desk Organization", "desk organizer storage workspace tidy sturdy", [
        ("Desk Organizers", "Desk Organizer", "mesh caddy compartments drawer tray rotating", "color material"),
        ("File Folders", "File Folder", "letter-size tab manila reinforced hanging expanding", "color count"),
        ("Binders", "Binder", "ring d-ring view clear-cover presentation heavy-duty", "color size"),
        ("Paper Trays", "Paper Tray", "stackable letter inbox document mesh tier", "color material"),
        ("Bookends", "Bookend", "nonskid metal heavy-duty shelf decorative support", "color material"),
        ("Magazine Holders", "Magazine Holder", "file box upright cardboard label slim", "color count"),
        ("Drawer Organizers", "Drawer Organizer", "divider bins expandable modular tray interlocking", "color material"),
        ("Monitor Stands", "Monitor Stand", "riser ergonomic adjustable laptop height ventilated", "color material"),
    ]),
    ("Lab Supplies", "laboratory scientific lab research graduated sterile", [
        ("Beakers", "Beaker", "borosilicate griffin low-form spout heat-resistant measuring", "size count"),
        ("Pipettes", "Pipette", "transfer dropper disposable micropipette tips calibrated", "size count"),
        ("Test Tubes", "Test Tube", "culture rimless screw-cap centrifuge rack polypropylene", "size count"),
        ("Petri Dishes", "Petri Dish", "polystyrene culture agar vented stackable bacteriology", "size count"),
        ("Lab Gloves", "Lab Glove", "nitrile powder-free latex-free disposable exam textured", "size count"),
        ("Digital Scales", "Digital Scale", "precision milligram calibration tare lcd weighing", "size color"),
        ("Microscope Slides", "Microscope Slide", "frosted ground-edge coverslip specimen glass prepared", "count"),
        ("Thermometers", "Thermometer", "probe digital infrared readout accuracy stainless", "color"),
    ]),
    ("Power Tools", "power cordless battery motor brushless torque", [
        ("Cordless Drills", "Cordless Drill", "chuck driver lithium-ion variable-speed compact clutch", "voltage"),
        ("Impact Drivers", "Impact Driver", "hex quick-change high-torque fastening led compact", "voltage"),
        ("Angle Grinders", "Angle Grinder", "cutting disc paddle-switch guard grinding metal", "voltage size"),
        ("Circular Saws", "Circular Saw", "blade bevel carbide rip framing laser-guide", "voltage size"),
        ("Jigsaws", "Jigsaw", "orbital scroll curve blade tool-free cutting", "voltage"),
        ("Rotary Tools", "Rotary Tool", "engraving sanding polishing accessory multipurpose speed", "voltage count"),
        ("Orbital Sanders", "Orbital Sander", "sandpaper dust-collection random-orbit finishing pad", "voltage"),
        ("Heat Guns", "Heat Gun", "shrink stripping temperature nozzle dual-setting hot-air", "voltage"),
    ]),
    ("Hand Tools", "tool steel grip heavy-duty chrome professional", [
        ("Screwdriver Sets", "Screwdriver Set", "phillips slotted magnetic precision torx cushion", "count"),
        ("Wrenches", "Wrench", "adjustable combination ratcheting metric sae open-end", "size count"),
        ("Pliers", "Pliers", "needle-nose locking slip-joint cutting insulated jaw", "size"),
        ("Hammers", "Hammer", "claw fiberglass framing rubber mallet anti-vibration", "size"),
        ("Tape Measures", "Tape Measure", "retractable magnetic hook blade feet standout", "size color"),
        ("Utility Knives", "Utility Knife", "folding blade box-cutter retractable razor lockback", "color count"),
        ("Socket Sets", "Socket Set", "ratchet drive metric extension case six-point", "count"),
        ("Hex Key Sets", "Hex Key Set", "allen ball-end l-shaped folding metric long-arm", "count"),
    ]),
    ("Electrical", "electrical wire voltage safety ul-listed home", [
        ("Wire Connectors", "Wire Connector", "twist lever splice push-in terminal insulated", "color count"),
        ("Electrical Tape", "Electrical Tape", "vinyl insulating flame-retardant stretchy weatherproof roll", "color count"),
        ("Multimeters", "Multimeter", "auto-ranging continuity tester clamp true-rms probe", "color"),
        ("Extension Cords", "Extension Cord", "outdoor grounded gauge flat-plug heavy-duty indoor", "size color"),
        ("LED Bulbs", "LED Bulb", "dimmable daylight a19 soft-white energy-saving equivalent", "count"),
        ("Power Strips", "Power Strip", "surge outlets usb mountable protector switch", "color count"),
        ("Light Switches", "Light Switch", "dimmer toggle rocker decorator single-pole wall", "color count"),
        ("Cable Ties", "Cable Tie", "zip nylon self-locking reusable wrap bundle", "color count"),
    ]),
    ("Safety Equipment", "safety protective comfortable durable workplace certified", [
        ("Safety Glasses", "Safety Glasses", "anti-fog ansi scratch-resistant clear wraparound lens", "color count"),
        ("Ear Plugs", "Ear Plugs", "foam noise-reduction corded reusable soft decibel", "count"),
        ("Respirator Masks", "Respirator Mask", "n95 filter valve dust particulate breathable", "size count"),
        ("Work Gloves", "Work Gloves", "cut-resistant leather grip touchscreen coated knit", "size count"),
        ("Hard Hats", "Hard Hat", "ratchet suspension vented cap-style brim impact", "color"),
        ("First Aid Kits", "First Aid Kit", "emergency bandages portable trauma compact pieces", "size"),
        ("Reflective Vests", "Safety Vest", "high-visibility reflective mesh pockets zipper breathable", "size color"),
        ("Fire Extinguishers", "Fire Extinguisher", "abc rechargeable gauge bracket home kitchen", "size"),
    ]),
]

_ATTRS: dict[str, list[str]] = {
    "color": ["Black", "Blue", "Red", "Green", "White", "Gray", "Yellow", "Orange", "Purple",
              "Assorted Colors"],
    "count": ["Pack of 2", "6 Count", "12 Count", "24 Count", "36 Count", "50 Count", "100 Count"],
    "size": ["Small", "Medium", "Large", "X-Large", "Compact", "Standard", "Jumbo"],
    "material": ["Plastic", "Stainless Steel", "Aluminum", "Bamboo", "Metal", "Acrylic"],
    "voltage": ["12V", "18V", "20V MAX", "40V", "Corded 120V"],
}
_DETAIL_KEY = {"color": "Color", "count": "Number of Items", "size": "Size",
               "material": "Material", "voltage": "Voltage"}
_USES = ["home", "office", "school", "the workshop", "the lab", "daily use", "professionals",
         "projects", "the job site", "travel"]
_ONSETS = ["b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "cr",
           "dr", "gr", "pl", "st", "tr", "th", "sh", "qu"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "io", "ou", "ea"]
_CODAS = ["", "", "n", "r", "s", "x", "l", "m", "nt", "rk"]


def pronounceable(rng: np.random.Generator, n: int, syllables: tuple[int, int] = (2, 3),
                  taken: set[str] | None = None) -> list[str]:
    """``n`` distinct capitalised made-up words (e.g. "Zentrix"), none of them in ``taken``."""
    taken = set() if taken is None else taken
    out: list[str] = []
    while len(out) < n:
        k = int(rng.integers(syllables[0], syllables[1] + 1))
        word = "".join(
            _ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))]
            for _ in range(k)
        ) + _CODAS[rng.integers(len(_CODAS))]
        word = word.capitalize()
        if word not in taken:
            taken.add(word)
            out.append(word)
    return out


def _cap(word: str) -> str:
    return word[:1].upper() + word[1:]


def _a(word: str) -> str:
    return "An" if word[:1].lower() in "aeiou" else "A"


def lower_head(head: str) -> str:
    """Lower-case a head noun for running text, keeping acronyms ("LED Bulb" -> "LED bulb")."""
    return " ".join(w if w.isupper() and len(w) > 1 else w.lower() for w in head.split())


@dataclass
class Catalog:
    """The generated catalog. Items are numbered 0..n-1 grouped by sub-type (contiguous)."""

    category_names: list[str]  # top categories
    category_vocab: list[list[str]]
    subtype_names: list[str]  # global sub-type index -> name
    subtype_category: np.ndarray  # (n_sub,) top-category index
    subtype_head: list[str]  # head noun, appears in every item title of the sub-type
    subtype_desc: list[list[str]]
    complements: np.ndarray  # (n_sub, 2) fixed complementary sub-types, most likely first
    subtype_popularity: np.ndarray  # (n_sub,) sums to 1
    subtype_item_start: np.ndarray  # (n_sub + 1,) item offsets
    item_subtype: np.ndarray  # (n_items,)
    item_cdf: np.ndarray  # (n_items,) sub-type index + within-sub-type Zipf CDF, increasing
    item_quality: np.ndarray  # (n_items,) mean rating
    item_brand: list[str]
    item_title: list[str]
    item_desc: list[str]  # one descriptor per item (used by review texts)
    parent_asin: list[str]
    variants: list[list[str]]  # asins of the item's variants (== [parent_asin] if single)
    meta_static: list[dict]  # meta fields that do not depend on the reviews

    @property
    def n_items(self) -> int:
        return len(self.item_title)

    def path(self, item: int) -> list[str]:
        """Sub-category path below the root, coarse to fine."""
        s = int(self.item_subtype[item])
        return [self.category_names[int(self.subtype_category[s])], self.subtype_names[s]]


def random_ids(rng: np.random.Generator, n: int, length: int, prefix: str,
               taken: set[str] | None = None) -> list[str]:
    """``n`` distinct ids of ``prefix`` + upper-case alphanumerics, ``length`` chars in all."""
    alphabet = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
    taken = set() if taken is None else taken
    out: list[str] = []
    while len(out) < n:
        codes = alphabet[rng.integers(0, 36, size=(n - len(out), length - len(prefix)))]
        for row in codes.view(f"S{length - len(prefix)}").ravel():
            ident = prefix + row.decode("ascii")
            if ident not in taken:
                taken.add(ident)
                out.append(ident)
    return out


def _tree(cfg: GeneratorConfig, rng: np.random.Generator):
    """Top-category names/vocab and sub-type names/heads/descriptors/attributes."""
    taken: set[str] = set()
    cats, cat_vocab, subs = [], [], []
    for c in range(cfg.n_top_categories):
        if c < len(_BANK):
            name, vocab, bank_subs = _BANK[c]
            words = vocab.split()
        else:
            name = " ".join(pronounceable(rng, 2, taken=taken))
            words = [w.lower() for w in pronounceable(rng, 6, (1, 2), taken)]
            bank_subs = []
        cats.append(name)
        cat_vocab.append(words)
        for k in range(cfg.subtypes_per_category):
            if k < len(bank_subs):
                sname, head, desc, attrs = bank_subs[k]
                subs.append((c, sname, head, desc.split(), attrs.split()))
            else:
                w = pronounceable(rng, 1, (2, 2), taken)[0]
                head = f"{w} {['Kit', 'Set', 'Tool', 'Unit', 'Pack'][k % 5]}"
                desc = [d.lower() for d in pronounceable(rng, 6, (1, 2), taken)]
                kinds = [str(k) for k in rng.choice(sorted(_ATTRS), size=2, replace=False)]
                subs.append((c, f"{head}s", head, desc, kinds))
    return cats, cat_vocab, subs


def build_catalog(cfg: GeneratorConfig, rng: np.random.Generator) -> Catalog:
    """Build the category tree, brands, items and their static meta fields."""
    cats, cat_vocab, subs = _tree(cfg, rng)
    n_sub = len(subs)
    sub_cat = np.array([s[0] for s in subs], dtype=np.int64)
    n_items = cfg.total_items

    # Sub-type popularity (used for user preferences) and items per sub-type (>= the floor).
    pop = rng.lognormal(0.0, 0.5, n_sub)
    pop /= pop.sum()
    weights = rng.lognormal(0.0, 0.3, n_sub)
    extra = rng.multinomial(n_items - cfg.min_items_per_subtype * n_sub, weights / weights.sum())
    per_sub = cfg.min_items_per_subtype + extra
    start = np.concatenate([[0], np.cumsum(per_sub)]).astype(np.int64)
    item_sub = np.repeat(np.arange(n_sub), per_sub)

    # Complementary map: most likely complement in the same top category, second anywhere else.
    comp = np.empty((n_sub, 2), dtype=np.int64)
    for s in range(n_sub):
        same = np.flatnonzero((sub_cat == sub_cat[s]) & (np.arange(n_sub) != s))
        other = np.flatnonzero(sub_cat != sub_cat[s])
        rest = np.delete(np.arange(n_sub), s)
        comp[s, 0] = rng.choice(same) if len(same) else (rng.choice(rest) if len(rest) else s)
        comp[s, 1] = rng.choice(other) if len(other) else comp[s, 0]

    # Zipf-like popularity within each sub-type, ranks in random order.
    rank = np.concatenate([rng.permutation(k) for k in per_sub]) + 1.0
    w = rank ** (-cfg.zipf_exponent)
    seg_sum = np.add.reduceat(w, start[:-1])
    cdf = np.empty(n_items)
    for s in range(n_sub):  # n_sub is small (tens to hundreds)
        cdf[start[s]:start[s + 1]] = np.cumsum(w[start[s]:start[s + 1]]) / seg_sum[s]
    cdf = np.minimum(cdf, 1.0) + item_sub
    cdf[start[1:] - 1] = np.arange(n_sub) + 1.0  # exact segment ends

    # Brands: each belongs to one top category; each sub-type draws a few from its category.
    brand_names = pronounceable(rng, cfg.n_brands, (2, 2))
    brand_cat = np.arange(cfg.n_brands) % cfg.n_top_categories
    sub_brands = []
    for s in range(n_sub):
        pool = np.flatnonzero(brand_cat == sub_cat[s])
        k = min(cfg.brands_per_subtype, len(pool))
        sub_brands.append(rng.choice(pool, size=k, replace=False))

    parents = random_ids(rng, n_items, 10, "B0")
    taken = set(parents)
    n_var = rng.choice([1, 1, 1, 2, 3], size=n_items)
    variants = [[p] for p in parents]
    multi = np.flatnonzero(n_var > 1)
    extra_ids = random_ids(rng, int(n_var[multi].sum()), 10, "B0", taken)
    pos = 0
    for i in multi:
        variants[i] = extra_ids[pos:pos + n_var[i]]
        pos += n_var[i]

    quality = np.clip(rng.normal(4.3, 0.45, n_items), 2.0, 5.0)
    titles, brands, descs, metas = [], [], [], []
    u = rng.random((n_items, 13))
    for i in range(n_items):
        s = int(item_sub[i])
        c, _sname, head, desc, kinds = subs[s]
        cv = cat_vocab[c]
        bpool = sub_brands[s]
        brand = brand_names[int(bpool[int(u[i, 0] ** 1.5 * len(bpool))])]
        j1 = int(u[i, 1] * len(desc))
        d1 = desc[j1]
        d2 = desc[(j1 + 1 + int(u[i, 2] * (len(desc) - 1))) % len(desc)]  # differs from d1
        cw = cv[int(u[i, 3] * len(cv))]
        cw2 = cv[int(u[i, 4] * len(cv))]
        attrs = {k: _ATTRS[k][int(u[i, 5 + j] * len(_ATTRS[k]))] for j, k in enumerate(kinds)}
        mid = f"{_cap(d1)} {_cap(d2)}" if u[i, 12] < 0.7 else _cap(d1)
        if u[i, 7] < 0.5:
            mid = f"{mid} {_cap(cw)}"
        title = f"{brand} {mid} {head}, " + ", ".join(attrs.values())
        use = _USES[int(u[i, 8] * len(_USES))]
        features = [
            f"{_cap(d1)} {lower_head(head)} designed for {use}",
            f"{_cap(cw)}-grade {d2} construction",
        ] + [f"{_DETAIL_KEY[k]}: {v}" for k, v in attrs.items()]
        description = [] if u[i, 9] < 0.15 else [
            f"The {brand} {lower_head(head)} brings {d1} and {d2} features to your {cw} routine.",
            f"{_a(cw2)} {cw2} {lower_head(head)} from our {cats[c].lower()} line, built for {use}.",
        ]
        price = None if u[i, 10] < 0.1 else round(float(np.exp(1.5 + 2.5 * u[i, 11]
                                                               + 0.3 * s / n_sub)), 2)
        details = {"Brand": brand}
        details.update({_DETAIL_KEY[k]: v for k, v in attrs.items()})
        details["Manufacturer"] = brand
        titles.append(title)
        brands.append(brand)
        descs.append(d1)
        metas.append({"features": features, "description": description, "price": price,
                      "details": details})
    _make_unique(titles, parents)
    for t, m in zip(titles, metas):
        m["title"] = t

    return Catalog(
        category_names=cats, category_vocab=cat_vocab,
        subtype_names=[s[1] for s in subs], subtype_category=sub_cat,
        subtype_head=[s[2] for s in subs], subtype_desc=[s[3] for s in subs],
        complements=comp, subtype_popularity=pop, subtype_item_start=start,
        item_subtype=item_sub, item_cdf=cdf, item_quality=quality, item_brand=brands,
        item_title=titles, item_desc=descs, parent_asin=parents, variants=variants,
        meta_static=metas,
    )


def _make_unique(titles: list[str], parents: list[str]) -> None:
    """Append a model code (from the item's ASIN) to repeated titles, in place."""
    seen: set[str] = set()
    for i, t in enumerate(titles):
        if t in seen:
            titles[i] = f"{t} (Model {parents[i][-4:]})"
            if titles[i] in seen:  # practically never: fall back to the full (unique) ASIN
                titles[i] = f"{t} (Model {parents[i]})"
        seen.add(titles[i])
