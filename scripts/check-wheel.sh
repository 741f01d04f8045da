#!/usr/bin/env bash
# What a user installing the built wheel gets: build it in a temporary folder, check that it carries
# LICENSE, its metadata (license, classifiers) and the demo's storefront, install it with the
# [demo] extra into a fresh virtualenv (no system site-packages; pip fetches the dependencies) and
# run the demo's command line from outside the checkout. Run by scripts/test.sh (too slow for
# pytest: the install alone takes 1-3 minutes on a fresh machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
START=$SECONDS
say() { printf 'check-wheel [%3ds] %s\n' "$((SECONDS - START))" "$*"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

say "building the wheel (pip wheel --no-deps) in $work"
"$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$work/dist" . >"$work/build.log" 2>&1 \
  || { cat "$work/build.log" >&2; say "ERROR: building the wheel failed"; exit 1; }
wheel=$(ls "$work"/dist/mcresolve-*.whl)

say "checking its contents: $(basename "$wheel")"
"$PY" - "$wheel" <<'PY'
import sys, zipfile
from email.parser import Parser

wheel = zipfile.ZipFile(sys.argv[1])
names = set(wheel.namelist())
info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
meta = Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
problems = []
license_text = wheel.read(f"{info}/licenses/LICENSE").decode() if f"{info}/licenses/LICENSE" in names else ""
if "Apache License" not in license_text or "Version 2.0, January 2004" not in license_text:
    problems.append("LICENSE (the Apache-2.0 text) missing from .dist-info/licenses/")
if meta.get("License-Expression") != "Apache-2.0":
    problems.append(f"License-Expression {meta.get('License-Expression')!r} != 'Apache-2.0'")
classifiers = meta.get_all("Classifier") or []
for wanted in ("Programming Language :: Python :: 3.11", "Typing :: Typed", "Framework :: AsyncIO"):
    if wanted not in classifiers:
        problems.append(f"classifier {wanted!r} missing")
for path in ("mcresolve/py.typed", "mcresolve/demo/__main__.py",
             "mcresolve/demo/storefront/__main__.py", "mcresolve/demo/storefront/seed.py",
             "mcresolve/demo/storefront/templates/index.html",
             "mcresolve/demo/storefront/static/style.css"):
    if path not in names:
        problems.append(f"{path} missing")
if problems:
    sys.exit("wheel: " + "; ".join(problems))
print(f"  LICENSE, License-Expression, {len(classifiers)} classifiers, the storefront: present")
PY

say "installing it with [demo] into a fresh virtualenv (pip fetches the dependencies)"
"$PY" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel[demo]" >"$work/install.log" 2>&1 \
  || { tail -n 30 "$work/install.log" >&2; say "ERROR: pip install of the wheel failed"; exit 1; }

say "running the demo's command line from $work (outside the checkout)"
cd "$work"
"$work/venv/bin/python" -m mcresolve.demo --help >"$work/help.txt" \
  || { cat "$work/help.txt" >&2; say "ERROR: python -m mcresolve.demo --help failed"; exit 1; }
grep -q -- "--keep-running" "$work/help.txt" || { say "ERROR: unexpected --help output"; exit 1; }
"$work/venv/bin/python" - <<'PY'
import subprocess, sys
from mcresolve.demo import processes
from mcresolve.demo.storefront import app

code = processes.storefront_code()
assert code == processes.StorefrontCode("mcresolve.demo.storefront", None), code
assert (app.TEMPLATES_DIR / "index.html").is_file(), app.TEMPLATES_DIR
assert "site-packages" in app.__file__, app.__file__
seed = subprocess.run([sys.executable, "-m", f"{code.module}.seed", "--help"],
                      capture_output=True, text=True, check=True)
assert "--wait" in seed.stdout, seed.stdout
print(f"  the demo runs its storefront as python -m {code.module} from {app.__file__}")
PY
say "OK: the wheel installs with [demo] and its demo finds the storefront"
