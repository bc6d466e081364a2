#!/usr/bin/env bash
# Builds the Debian package: bash contrib/deb/build.sh [OUTDIR]
#
# Needs only Go and the module proxy: nfpm (github.com/goreleaser/nfpm/v2)
# runs through `go run`, pinned, and is not a dependency of msgate's module.
# The package holds /usr/sbin/msgate (version stamped), contrib/msgate.toml
# as the conffile /etc/msgate/msgate.toml, the systemd unit, the man page
# msgate(8) and the contrib examples; the maintainer scripts beside this
# file create the msgate user and /var/lib/msgate.
#
# Environment: MSGATE_VERSION (default: from git), GOARCH (default: go env
# GOARCH), MSGATE_DEB_MAINTAINER (default: git's committer identity).
# Prints the path of the .deb on its last line.
set -euo pipefail

nfpm=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
out=$(mkdir -p "${1:-dist}" && cd "${1:-dist}" && pwd)

arch=${GOARCH:-$(go env GOARCH)}
# A Debian version must start with a digit: v1.2.3 tags become 1.2.3,
# untagged commits 0.0.0~gitYYYYMMDDhhmmss.HASH (sorting before any release).
version=${MSGATE_VERSION:-}
if [ -z "$version" ]; then
	if tag=$(git describe --tags --match 'v[0-9]*' --exact-match 2>/dev/null); then
		version=${tag#v}
	elif hash=$(git rev-parse --short=12 HEAD 2>/dev/null); then
		version=0.0.0~git$(TZ=UTC git log -1 --date=format-local:%Y%m%d%H%M%S --format=%cd).$hash
	else
		version=0.0.0~dev
	fi
	if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
		version=$version+dirty
	fi
fi
maintainer=${MSGATE_DEB_MAINTAINER:-}
if [ -z "$maintainer" ]; then
	maintainer=$(git var GIT_COMMITTER_IDENT 2>/dev/null | sed 's/ [0-9]* [-+][0-9]*$//') || true
	maintainer=${maintainer:-msgate maintainers}
fi
# Every file in the package gets the time of the commit, so that two builds
# of one commit give the same contents.
mtime=$(TZ=UTC git log -1 --date=format-local:%Y-%m-%dT%H:%M:%SZ --format=%cd 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

echo "==> go build ./cmd/msgate (GOARCH=$arch, version $version)" >&2
CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath \
	-ldflags "-s -w -X main.version=$version" -o "$stage/msgate" ./cmd/msgate

# The conffile is the documented example, which behaves as no file at all;
# the package refuses to build around a config msgate would refuse.
cp contrib/msgate.toml "$stage/msgate.toml"
if [ "$arch" = "$(go env GOHOSTARCH)" ]; then
	"$stage/msgate" check -config "$stage/msgate.toml" >&2
fi

# The unit as contrib/systemd has it, with the package's paths.
sed -e '/^# /d' \
	-e 's|/usr/local/bin/msgate|/usr/sbin/msgate|g' \
	-e 's|^Documentation=.*|Documentation=man:msgate(8) file:///usr/share/doc/msgate/README.md.gz|' \
	contrib/systemd/msgate.service >"$stage/msgate.service"
if grep -n '/usr/local' "$stage/msgate.service" >&2; then
	echo "contrib/deb/build.sh: the unit still names /usr/local paths (above)" >&2
	exit 1
fi

gzip -9n <contrib/man/msgate.8 >"$stage/msgate.8.gz"
gzip -9n <README.md >"$stage/README.md.gz"

cat >"$stage/nfpm.yaml" <<YAML
name: msgate
arch: $arch
platform: linux
version: $version
version_schema: none
mtime: $mtime
section: mail
priority: optional
maintainer: $maintainer
description: |-
  outbound policy milter that keeps a mail server's IP off Microsoft's block list
  msgate is a milter for Postfix and Sendmail. It recognises recipients hosted
  by Microsoft (Outlook.com, Hotmail, Live, MSN and Microsoft 365 domains),
  holds each sending account to rate limits on them, keeps the whole server
  under the daily cap of a conditional mitigation, stops accounts that
  Outlook.com users complain about, and reacts to Microsoft's block and
  throttle replies.
depends:
  - adduser
recommends:
  - postfix | mail-transport-agent
contents:
  - src: $stage/msgate
    dst: /usr/sbin/msgate
    file_info: {mode: 0755}
  - dst: /etc/msgate
    type: dir
    file_info: {mode: 0755}
  - src: $stage/msgate.toml
    dst: /etc/msgate/msgate.toml
    type: config|noreplace
    file_info: {mode: 0640}
  - src: $stage/msgate.service
    dst: /usr/lib/systemd/system/msgate.service
    file_info: {mode: 0644}
  - src: $stage/msgate.8.gz
    dst: /usr/share/man/man8/msgate.8.gz
    file_info: {mode: 0644}
  - src: $stage/README.md.gz
    dst: /usr/share/doc/msgate/README.md.gz
    file_info: {mode: 0644}
YAML
# The examples, with the package's path of the binary (Postfix's pipe).
for f in contrib/postfix/* contrib/sendmail/* contrib/grafana/* contrib/prometheus/*; do
	mkdir -p "$stage/examples/$(dirname "${f#contrib/}")"
	sed 's|/usr/local/bin/msgate|/usr/sbin/msgate|g' "$f" >"$stage/examples/${f#contrib/}"
	cat >>"$stage/nfpm.yaml" <<YAML
  - src: $stage/examples/${f#contrib/}
    dst: /usr/share/doc/msgate/examples/${f#contrib/}
    file_info: {mode: 0644}
YAML
done
cat >>"$stage/nfpm.yaml" <<YAML
scripts:
  postinstall: $here/postinst
  preremove: $here/prerm
  postremove: $here/postrm
YAML

echo "==> go run $nfpm package -p deb" >&2
(cd "$stage" && go run "$nfpm" package -f nfpm.yaml -p deb -t "$out/" >&2)
deb="$out/msgate_${version}_${arch}.deb"
if [ ! -f "$deb" ]; then
	echo "contrib/deb/build.sh: nfpm did not write $deb" >&2
	ls -l "$out" >&2
	exit 1
fi
echo "$deb"
