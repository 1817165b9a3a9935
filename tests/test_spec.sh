#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# test_spec.sh -- the specification and the code stay in step: every
# section, identity and appendix part that a source file, a man page, the
# README or the tool cites ("SPEC §n", "§n-m", "SPEC In", "App. A.n")
# exists in SPEC.md, and still-spec(7) has every section of SPEC.md.
. "$(dirname "$0")/tap.sh"
tap_start test_spec
top=${STILL_TOP_SRCDIR:-$(dirname "$0")/..}
spec="$top/SPEC.md"
page="$top/man/still-spec.7"

# The files that may cite the specification (not the data and corpora).
find "$top/include" "$top/lib" "$top/ref" "$top/simd" "$top/tools" "$top/tests" \
    "$top/man" "$top/python" "$top/bench" "$top/examples" "$top/README.md" \
    -type f \( -name '*.[ch]' -o -name '*.sh' -o -name '*.py' -o -name '*.[1-9]' \
    -o -name '*.md' -o -name '*.am' -o -name '*.def' \) \
    ! -path '*/data/*' ! -path '*/corpus/*' 2>/dev/null | sort >"$dir/files"
report $([ -s "$dir/files" ] && echo 0 || echo 1) "found the files that cite the specification"

# Sections, identities and appendix parts the specification defines.
sed -n 's/^## \([0-9][0-9]*\)\. .*/S\1/p; s/^### \(A\.[0-9][0-9]*\) .*/\1/p' "$spec" >"$dir/defined"
grep -o '^- \*\*I[0-9][0-9]*\*\*' "$spec" | sed 's/^- \*\*\(I[0-9]*\)\*\*/\1/' >>"$dir/defined"
grep -q '^## Appendix A\.' "$spec" && echo A >>"$dir/defined"
report $([ "$(grep -c '^S' "$dir/defined")" -ge 12 ] && echo 0 || echo 1) \
    "SPEC.md defines its sections"

# Citations: "§n" and "\(scn" (man pages), with ranges "§n-m" / "§n–m" /
# "§n to §m"; identities "SPEC In"; "App. A.n" and "SPEC App. A".  Other
# documents' sections (FIPS 180-4 in a comment) are not ours.
: >"$dir/cited"
with_file() { awk -v f="$1" '{ print $0, f }' >>"$dir/cited"; }
while read -r f; do
    grep -v 'FIPS' "$f" | grep -oE '(§|\\\(sc) ?[0-9]+((-|–|\\\(en)[0-9]+)?' |
        sed 's/\\(sc/§/; s/\\(en/-/; s/– */-/; s/§ */§/' |
        while IFS=- read -r a b; do
            a=${a#§}
            b=${b:-$a}
            i=$a
            while [ "$i" -le "$b" ]; do
                echo "S$i $f"
                i=$((i + 1))
            done
        done >>"$dir/cited"
    grep -oE 'SPEC I[0-9]+' "$f" | sed 's/^SPEC //' | with_file "$f"
    grep -oE 'App\. ?A\.[0-9]+' "$f" | sed 's/^App\. *//' | with_file "$f"
    grep -oE 'SPEC App\. ?A\b' "$f" | sed 's/.*/A/' | with_file "$f"
done <"$dir/files"
report $([ -s "$dir/cited" ] && echo 0 || echo 1) "the sources cite the specification"

missing=0
sort -u "$dir/cited" >"$dir/cited.u"
while read -r what where; do
    if ! grep -qx "$what" "$dir/defined"; then
        echo "# $where cites $what, which SPEC.md does not define"
        missing=$((missing + 1))
    fi
done <"$dir/cited.u"
report "$missing" "every cited section, identity and appendix part exists ($(cut -d' ' -f1 "$dir/cited.u" | sort -u | wc -l) distinct)"

# still-spec(7) renders SPEC.md: the same section headings, in order.
if [ -f "$page" ]; then
    sed -n 's/^## \(.*\)/\1/p; s/^### \(.*\)/\1/p' "$spec" | tr -d '`*' |
        sed 's/[^A-Za-z0-9]//g' >"$dir/md"
    sed -n 's/^\.S[HS] *//p' "$page" | tr -d '"' | sed -E 's/\\f\[[A-Z]*\]//g; s/\\f[BIRP]//g; s/\\\[[a-z]+\]//g; s/\\\(..//g' |
        sed 's/[^A-Za-z0-9]//g' >"$dir/man"
    missing=0
    while read -r h; do
        grep -qx "$h" "$dir/man" || { echo "# still-spec.7 lacks the section: $h"; missing=$((missing + 1)); }
    done <"$dir/md"
    report "$missing" "still-spec(7) has every section of SPEC.md"
    if command -v pandoc >/dev/null 2>&1; then
        sh "$top/man/render-spec.sh" "$top" >"$dir/rendered" 2>"$dir/render.err"
        cmp -s "$dir/rendered" "$page"
        report $? "still-spec(7) is man/render-spec.sh's rendering of SPEC.md"
    else
        skip "still-spec(7) is man/render-spec.sh's rendering of SPEC.md" "pandoc not installed"
    fi
else
    report 1 "still-spec(7) exists"
fi
tap_end
