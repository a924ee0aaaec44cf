"""Package layout only (everything else is in pyproject.toml).

`operations/` and `auth/` live at the repository root (the product owner's layout) but are installed as
`fhirlead.operations` and `fhirlead.auth`, so they never collide with other distributions' top-level
packages. pyproject.toml cannot express "find the packages under a folder and rename them", hence this.
"""

from setuptools import find_packages, setup

MAPPED = {"fhirlead.operations": "operations", "fhirlead.auth": "auth"}


def packages() -> list[str]:
    found = find_packages(include=["fhirlead", "fhirlead.*"])
    for package, folder in MAPPED.items():
        found += [package + name[len(folder):] for name in find_packages(include=[folder, folder + ".*"])]
    return found


setup(packages=packages(), package_dir={"fhirlead": "fhirlead", **MAPPED})
