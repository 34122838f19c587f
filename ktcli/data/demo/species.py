"""The 20 demo species: each a combination of five local parts.

The parts are head shape, head colour, wing pattern, tail shape and leg
colour. The 20 species are chosen so that

* every species differs from its nearest other species in exactly two parts
  (and from each of at least two others in two parts);
* every value of every part is shared by six or seven species, so no single
  part identifies a species, and every combination of values of any two
  parts occurs, so no part can stand in for another;
* any two species differ in at least two of the four body regions (head,
  wing, tail, legs), so a species stays identifiable when one region is
  hidden.
"""
PART_VALUES: dict[str, tuple[str, ...]] = {
    'head_shape': ('round', 'crested', 'pointed'),
    'head_colour': ('red', 'blue', 'yellow'),
    'wing_pattern': ('plain', 'barred', 'spotted'),
    'tail_shape': ('fan', 'fork', 'spike'),
    'leg_colour': ('black', 'orange', 'pale'),
}

# The parts of each species in label order, in the order of PART_VALUES.
SPECIES: tuple[tuple[str, str, str, str, str], ...] = (
    ('round', 'red', 'plain', 'fork', 'pale'),
    ('round', 'red', 'barred', 'spike', 'orange'),
    ('round', 'blue', 'plain', 'fan', 'pale'),
    ('round', 'blue', 'barred', 'fork', 'orange'),
    ('round', 'blue', 'spotted', 'fork', 'black'),
    ('round', 'yellow', 'plain', 'fan', 'orange'),
    ('crested', 'red', 'barred', 'spike', 'pale'),
    ('crested', 'red', 'spotted', 'fan', 'black'),
    ('crested', 'red', 'spotted', 'fork', 'pale'),
    ('crested', 'blue', 'plain', 'spike', 'black'),
    ('crested', 'yellow', 'plain', 'fan', 'black'),
    ('crested', 'yellow', 'barred', 'fork', 'pale'),
    ('crested', 'yellow', 'spotted', 'fork', 'orange'),
    ('pointed', 'red', 'barred', 'fan', 'black'),
    ('pointed', 'blue', 'plain', 'spike', 'orange'),
    ('pointed', 'blue', 'barred', 'fan', 'orange'),
    ('pointed', 'blue', 'spotted', 'spike', 'black'),
    ('pointed', 'yellow', 'plain', 'fork', 'orange'),
    ('pointed', 'yellow', 'barred', 'fan', 'pale'),
    ('pointed', 'yellow', 'spotted', 'spike', 'pale'),
)

DEMO_CLASSES: tuple[str, ...] = tuple(
    f'{head}-{colour}-{pattern}-{tail}tail-{legs}leg'
    for head, colour, pattern, tail, legs in SPECIES)


def species_parts(label: int) -> dict[str, str]:
    """Return the parts of a demo species.

    Args:
        label: The 0-based class label, an index into ``DEMO_CLASSES``.

    Returns:
        A dict from part name (the keys of ``PART_VALUES``) to its value.
    """
    if not 0 <= label < len(SPECIES):
        raise ValueError(
            f'label must be in [0, {len(SPECIES)}), got {label}')
    return dict(zip(PART_VALUES, SPECIES[label], strict=True))
