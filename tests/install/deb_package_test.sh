#!/usr/bin/env bash
# Builds the .deb with CPack and inspects it without installing it on the machine: its files
# (dpkg-deb -c), its control data (dpkg-deb -I: name, dependencies found by dpkg-shlibdeps), its
# maintainer scripts (the service's own user, the state directory), the systemd unit, and the
# packaged server run from the unpacked tree, serving the packaged dashboard.
#   tests/install/deb_package_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
source=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$build" && cpack -G DEB -B "$work/out" >"$work/cpack.log" 2>&1) ||
  { cat "$work/cpack.log"; exit 1; }
deb=$(ls "$work"/out/lossguard-server_*.deb)
echo "built $(basename "$deb") ($(du -h "$deb" | cut -f1))"

dpkg-deb -c "$deb" | awk '{print $NF}' >"$work/files"
for file in ./usr/bin/lossguard-server ./usr/bin/lossguard ./usr/share/lossguard/web/index.html \
            ./usr/share/lossguard/web/app.js ./usr/lib/systemd/system/lossguard-server.service; do
  grep -qx "$file" "$work/files" || { echo "missing from the package: $file"; cat "$work/files"; exit 1; }
done
if grep -q -e '/include/' -e '\.a$' -e 'cmake/lossguard' "$work/files"; then
  echo "the package holds developer files:"; grep -e '/include/' -e '\.a$' "$work/files"; exit 1
fi

dpkg-deb -I "$deb" >"$work/info"
grep -q '^ Package: lossguard-server$' "$work/info"
grep -q '^ Version: ' "$work/info"
for dependency in adduser libsqlite3-0 libpq5 libssl3; do
  grep '^ Depends:' "$work/info" | grep -q "$dependency" ||
    { echo "Depends lacks $dependency:"; grep '^ Depends:' "$work/info"; exit 1; }
done

dpkg-deb -e "$deb" "$work/control"
grep -q 'adduser --system --group --home /var/lib/lossguard' "$work/control/postinst"
grep -q 'install -d -o lossguard -g lossguard -m 0750 /var/lib/lossguard' "$work/control/postinst"
[[ -x "$work/control/postinst" && -x "$work/control/prerm" && -x "$work/control/postrm" ]]
sh -n "$work/control/postinst" && sh -n "$work/control/prerm" && sh -n "$work/control/postrm"

mkdir "$work/root"
dpkg-deb -x "$deb" "$work/root"
unit="$work/root/usr/lib/systemd/system/lossguard-server.service"
grep -qx 'User=lossguard' "$unit"
grep -qx 'StateDirectory=lossguard' "$unit"
grep -qx 'ExecStart=/usr/bin/lossguard-server --listen 127.0.0.1:8080 --db /var/lib/lossguard/lossguard.db' "$unit"
grep -qx 'WantedBy=multi-user.target' "$unit"

mkdir "$work/run"
bash "$source/tests/install/served_dashboard.sh" "$work/root/usr" "$work/run"
echo "deb: contents, control data, maintainer scripts and unit checked; the packaged server serves its dashboard"
