"""Map data -> weak labels: which tags give which class, how wide lines are, what to credit.

Run: python map_labels.py --scenes data/scenes --map-data data/region.osm.pbf \
         --tags config/map_tags.py --output-root data/map_labels

Copy this file and edit it for other map data or another class scheme. Classes are named as in
geoseg/classes.py; an unknown class, tier or name is an error naming it. A feature takes the rule
of the highest tier it matches (the first such rule where several match). Features no rule
matches, and points, say nothing: their pixels stay ignore (255) unless another feature covers
them.
"""

# Credited in every label GeoTIFF and in summary.json. OpenStreetMap's licence (ODbL) requires it;
# change it for other map data.
attribution = "© OpenStreetMap contributors, ODbL"

# Where features overlap, the higher tier wins (first = highest): buildings over roads over water
# over land use over land cover. Within a tier, smaller features win over larger ones (a pond in a
# park, a clearing in a forest).
tiers = ("buildings", "roads", "water", "land use", "land cover")

# (tier, key, values, class). Values: one tag value, several as "a|b", or "*" for any value but
# "no" (building=no is not a building).
rules = [
    ("buildings", "building", "*", "settlement"),
    ("roads", "highway", "*", "settlement"),
    ("roads", "railway", "rail", "settlement"),
    ("water", "natural", "water", "water"),
    ("water", "water", "*", "water"),
    ("water", "waterway", "riverbank|river|stream|canal", "water"),
    ("water", "landuse", "reservoir|basin", "water"),
    ("land use", "landuse", "forest", "forest"),
    ("land use", "landuse", "meadow|grass", "grassland"),
    ("land use", "landuse", "farmland|orchard|vineyard", "cropland"),
    ("land use", "landuse", "residential|commercial|industrial|retail", "settlement"),
    ("land use", "landuse", "quarry", "other"),
    ("land cover", "natural", "wood", "forest"),
    ("land cover", "natural", "grassland|heath|scrub", "grassland"),
    ("land cover", "natural", "bare_rock|sand|beach", "other"),
]

# Lines (roads, railways, waterways) are buffered to a width in metres: their "width" tag ("10",
# "10 m", "10.5"), else their "lanes" tag times lane_width, else the default of their tag below
# ("key=*": any other value of the key). A line with none of these is skipped and counted;
# polygons are burnt as they are.
lane_width = 3.5
line_widths = {
    "highway=motorway": 25,
    "highway=trunk": 20,
    "highway=primary": 12,
    "highway=secondary": 10,
    "highway=tertiary": 8,
    "highway=residential": 7,
    "highway=service": 4,
    "highway=footway": 2,
    "highway=path": 2,
    "highway=cycleway": 2,
    "highway=steps": 2,
    "highway=track": 3,
    "highway=*": 5,
    "railway=rail": 4,
    "waterway=river": 15,
    "waterway=canal": 8,
    "waterway=stream": 3,
}
