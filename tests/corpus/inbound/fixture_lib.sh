# Sourced by make_fixtures.sh (Postfix) and make_exim_fixtures.sh (Exim): the far side the
# test mails go to, the test message, and waiting for and keeping the reports that come back.
# The sourcing script sets HERE (this folder) and OUT (its temporary folder) first, and may
# set MTA_LOGS (a folder) to have the MTA's logs shown when a report never arrives.

start_far_side() {  # the refusing and deferring SMTP servers; sets HELPER (their pid)
    python3 "$HERE/mta_helper.py" serve "$OUT/captured" > "$OUT/helper.log" 2>&1 &
    HELPER=$!
    sleep 2
}

tok() { python3 "$HERE/mta_helper.py" tokens | awk -v id="$1" '$1 == id {print $2}'; }

message() {  # message SEND_ID TO SUBJECT
    printf 'From: Acme Payments <hello@acme.test>\nTo: %s\nSubject: %s\nDate: %s\nMessage-ID: <%s.fixture@acme.test>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nHello from the fixture generator (send %s).\n' \
        "$2" "$3" "$(date -R)" "$1" "$1"
}

wait_for() {  # wait_for N: until N reports were captured (at most 90 s)
    i=0
    while [ "$(ls "$OUT/captured" 2>/dev/null | wc -l)" -lt "$1" ] && [ $i -lt 90 ]; do sleep 1; i=$((i + 1)); done
}

keep() {  # keep NAME: the newest captured report becomes tests/corpus/inbound/NAME.eml
    f=$(ls "$OUT/captured" | sort | tail -1)
    if [ -z "$f" ]; then
        echo "no report captured for $1" >&2
        if [ -n "${MTA_LOGS:-}" ]; then echo "the MTA's log:" >&2; cat "$MTA_LOGS"/* >&2; fi
        exit 1
    fi
    mv "$OUT/captured/$f" "$HERE/$1.eml"
    echo "wrote $1.eml"
}
