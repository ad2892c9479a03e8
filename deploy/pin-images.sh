#!/usr/bin/env bash
# Pins every third-party image under deploy/ to a digest, in place, where it is used:
#   Dockerfiles:    ARG PYTHON_IMAGE=python:3.12-slim-bookworm   -> ...-bookworm@sha256:<digest>
#   compose files:  image: postgres:16-bookworm                   -> image: postgres:16-bookworm@sha256:<digest>
# The tag stays for people to read; the digest is what Docker pulls. Our own images (their names hold a
# ${...} version variable) are pinned by release version instead and are left alone.
#
# Usage: deploy/pin-images.sh           resolve each tag's current digest and write it (refreshes old pins)
#        deploy/pin-images.sh --check   list references without a digest; exit 1 if there is any
# Resolving needs registry access and `docker buildx imagetools inspect`; --check needs neither.
# Policy (deploy/README.md): the repository keeps tags only while no one has run this with registry access;
# a release is built after `pin-images.sh` and commits its result, and its pipeline runs `--check`.
set -euo pipefail
DEPLOY=${PIN_IMAGES_ROOT:-$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")}
check=false
case "${1:-}" in
  "") ;;
  --check) check=true ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

# "file<TAB>line<TAB>reference" for every third-party image reference.
references() {
  local f
  while IFS= read -r -d '' f; do
    case $f in
      *Dockerfile) grep -nE '^ARG [A-Z_]+_IMAGE=' "$f" | sed -E "s#^([0-9]+):ARG [A-Z_]+_IMAGE=#$f\t\1\t#" ;;
      *) grep -nE '^ +image: +[^$ ]+$' "$f" | sed -E "s#^([0-9]+): +image: +#$f\t\1\t#" ;;
    esac
  done < <(find "$DEPLOY" \( -name '*Dockerfile' -o -name 'compose*.yaml' \) -not -path '*/tests/*' -print0 | sort -z)
}

unpinned=0 pinned=0
while IFS=$'\t' read -r file line ref; do
  tag=${ref%%@*}
  if $check; then
    if [[ $ref == *@sha256:* ]]; then
      echo "pinned: ${file#"$DEPLOY"/}:$line $ref"
      pinned=$((pinned + 1))
    else
      echo "unpinned: ${file#"$DEPLOY"/}:$line $ref"
      unpinned=$((unpinned + 1))
    fi
    continue
  fi
  digest=$(docker buildx imagetools inspect "$tag" --format '{{.Manifest.Digest}}')
  [[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "no digest for $tag: '$digest'" >&2; exit 1; }
  sed -i "${line}s#${ref//./\\.}\$#${tag}@${digest}#" "$file"
  echo "${file#"$DEPLOY"/}:$line $tag@$digest"
done < <(references)
if $check; then
  echo "$pinned pinned, $unpinned unpinned"
  ((unpinned == 0))
fi
