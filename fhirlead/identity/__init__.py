"""Patient identity matching: is this Patient record the same person as that one?

A library with no server in it, so its rules can be read, tested and tuned alone:
- `demographics`: what a Patient says about who they are, normalised (names, birth date, sex,
  identifiers, address, telecom);
- `compare`: field by field, how two records agree (exact, nickname, phonetic, typo, transposed...);
- `score`: Fellegi-Sunter weights for those agreement levels, the total, and the grade
  (certain, probable, possible, certainly-not) with the reasons behind it;
- `blocking`: the few indexed searches that find the candidates worth comparing.

The weights and thresholds are documented in docs/identity.md.
"""
