#!/bin/sh
# System packages the test suite exercises, installed when this machine can (root + apt).
# Called by `make test`. Never fails: a package that cannot be installed is named in one line
# and the tests that need it skip with the reason.
# One line per package: "<debian package> <file that shows it is installed>".
PACKAGES="
chromium /usr/bin/chromium
bubblewrap /usr/bin/bwrap
"
missing=""
for pkg in $(printf '%s\n' "$PACKAGES" | awk 'NF == 2 { print $1 ":" $2 }'); do
  [ -e "${pkg#*:}" ] || missing="$missing ${pkg%%:*}"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  if apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1 ||
     { apt-get update -q >/dev/null 2>&1 &&
       apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1; }; then
    echo "sysdeps: installed$missing"
  else
    echo "sysdeps: could not install$missing with apt-get; the tests that need it skip"
  fi
else
  echo "sysdeps: missing$missing (installing needs root and apt-get); the tests that need it skip"
fi
exit 0
