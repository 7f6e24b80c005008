"""A small audience taxonomy in the IAB Audience Taxonomy 1.1 layout.

Three tiers under Demographic / Interest / Purchase Intent, numeric ids,
each node pointing at its parent. Names are condensed paths
("Interest | Sports | Running") as in the IAB file. The names are
invented; only the shape follows the standard.
"""

from __future__ import annotations

TREE = {
    (1000, "Demographic"): {
        (1001, "Age Range"): [(1002, "18-24"), (1003, "25-34"), (1004, "35-44"),
                              (1005, "45-54"), (1006, "55-64"), (1007, "65+")],
        (1010, "Gender"): [(1011, "Female"), (1012, "Male")],
        (1020, "Household Income"): [(1021, "Lower"), (1022, "Middle"),
                                     (1023, "Upper")],
        (1030, "Life Stage"): [(1031, "Students"), (1032, "Young Parents"),
                               (1033, "Empty Nesters"), (1034, "Retirees")],
        (1040, "Education"): [(1041, "Secondary"), (1042, "Vocational"),
                              (1043, "University")],
    },
    (2000, "Interest"): {
        (2001, "Style & Fashion"): [(2002, "Womenswear"), (2003, "Menswear"),
                                    (2004, "Streetwear"), (2005, "Luxury Fashion")],
        (2010, "Sports"): [(2011, "Running"), (2012, "Cycling"), (2013, "Fitness"),
                           (2014, "Football"), (2015, "Yoga")],
        (2020, "Home & Garden"): [(2021, "Interior Design"), (2022, "Gardening"),
                                  (2023, "DIY"), (2024, "Cooking")],
        (2030, "Beauty & Personal Care"): [(2031, "Skin Care"), (2032, "Make-up"),
                                           (2033, "Fragrance")],
        (2040, "Technology & Computing"): [(2041, "Consumer Electronics"),
                                           (2042, "Smart Home"), (2043, "Gaming"),
                                           (2044, "Audio")],
        (2050, "Family & Parenting"): [(2051, "Babies & Toddlers"),
                                       (2052, "School-age Children"),
                                       (2053, "Toys & Games")],
        (2060, "Travel"): [(2061, "City Trips"), (2062, "Beach Holidays"),
                           (2063, "Camping")],
        (2070, "Food & Drink"): [(2071, "Vegetarian"), (2072, "Wine"),
                                 (2073, "Coffee")],
        (2080, "Shopping"): [(2081, "Deal Seekers"), (2082, "Premium Brands"),
                             (2083, "Loyalty Programs & Rewards"),
                             (2084, "Online Shopping Enthusiasts")],
        (2090, "Personal Finance"): [(2091, "Saving"), (2092, "Investing")],
        (2100, "Hobbies"): [(2101, "Photography"), (2102, "Reading"),
                            (2103, "Music")],
        (2110, "Sustainability"): [(2111, "Green Living"), (2112, "Second-hand")],
    },
    (3000, "Purchase Intent"): {
        (3001, "Apparel & Accessories"): [(3002, "Clothing"), (3003, "Footwear"),
                                          (3004, "Jewellery")],
        (3010, "Consumer Electronics"): [(3011, "Audio Equipment"),
                                         (3012, "Wearables"),
                                         (3013, "Mobile Accessories")],
        (3020, "Home & Garden"): [(3021, "Furniture"), (3022, "Bedding & Bath"),
                                  (3023, "Garden Supplies")],
        (3030, "Beauty"): [(3031, "Skin Care Products"), (3032, "Cosmetics")],
        (3040, "Sporting Goods"): [(3041, "Running Gear"), (3042, "Fitness Equipment")],
        (3050, "Baby & Kids"): [(3051, "Baby Clothing"), (3052, "Toys")],
        (3060, "Travel"): [(3061, "Flights"), (3062, "Hotels")],
        (3070, "Automotive"): [(3071, "New Cars"), (3072, "Electric Vehicles")],
    },
}


def taxonomy_rows() -> list[list]:
    """``id,parent_id,name,tier`` rows, parents before children."""
    rows = []
    for (tid, tname), children in TREE.items():
        rows.append([tid, "", tname, 1])
        for (cid, cname), leaves in children.items():
            rows.append([cid, tid, f"{tname} | {cname}", 2])
            for lid, lname in leaves:
                rows.append([lid, cid, f"{tname} | {cname} | {lname}", 3])
    return rows


def leaf_ids() -> list[int]:
    return [r[0] for r in taxonomy_rows() if r[3] == 3]


def known_ids() -> set[int]:
    return {r[0] for r in taxonomy_rows()}
