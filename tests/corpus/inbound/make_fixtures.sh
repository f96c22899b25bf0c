#!/bin/sh
# Regenerate the real-MTA bounce fixtures in this folder (tests/corpus/inbound/*.eml).
#
# Run as root on a throwaway Debian machine or container, from the repository root:
#     sh tests/corpus/inbound/make_fixtures.sh postfix
# (Exim's reports: make_exim_fixtures.sh beside this script; the two MTAs conflict as packages.)
# It installs the MTA from Debian if missing, runs it from a throwaway configuration and queue
# (an installed MTA's own configuration is not touched; loopback only, no port 25 listener),
# submits test mails whose envelope sender is a VERP address (tests' key ring, see
# mta_helper.py) to addresses whose far side refuses them (550 5.1.1, 552 5.2.2, a local
# unknown user) or defers them (451 4.4.1, until the MTA sends its delay warning), captures
# the reports the MTA sends back to the VERP address, writes them here, and removes the MTA
# if it installed it.
set -eu
MTA=${1:-postfix}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
OUT=$(mktemp -d)
chmod 755 "$OUT"  # the MTA's own users must reach its queue
export PYTHONPATH="$ROOT"
export DEBIAN_FRONTEND=noninteractive

. "$HERE/fixture_lib.sh"
start_far_side
trap 'kill $HELPER 2>/dev/null || true' EXIT

case "$MTA" in
postfix)
    # The MTA runs from its own configuration and queue directories: an installed Postfix
    # and its /etc/postfix are left as they are (and the package removed only if installed here).
    INSTALLED=
    if ! command -v postfix > /dev/null; then
        echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
        apt-get install -y -q postfix > "$OUT/apt.log" 2>&1
        INSTALLED=yes
    fi
    CONF="$OUT/postfix-conf"
    mkdir -p "$CONF" "$OUT/postfix-queue" "$OUT/postfix-data"
    chown postfix "$OUT/postfix-data"
    cp /etc/postfix/master.cf.proto "$CONF/master.cf" 2>/dev/null || cp /usr/share/postfix/master.cf.dist "$CONF/master.cf"
    # No SMTP listener on port 25: mail is submitted with sendmail(1) only.
    sed -i 's/^smtp \( *inet\)/#smtp \1/' "$CONF/master.cf"
    cat > "$CONF/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $OUT/postfix-queue
data_directory = $OUT/postfix-data
myhostname = mta.test
mydomain = mta.test
myorigin = mta.test
mydestination = mta.test, localhost
inet_interfaces = loopback-only
inet_protocols = ipv4
relayhost =
transport_maps = inline:{ shop.test=smtp:[127.0.0.1]:2525, bounce.test=smtp:[127.0.0.1]:2526, slow.test=smtp:[127.0.0.1]:2527 }
smtp_tls_security_level = none
smtp_host_lookup = native
disable_dns_lookups = yes
alias_maps =
alias_database =
local_recipient_maps = unix:passwd.byname
recipient_delimiter = +
delay_warning_time = 1s
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
maillog_file_prefixes = $OUT
maillog_file = $OUT/postfix.log
CF
    PF="postfix -c $CONF"
    $PF check > /dev/null 2>&1 || true
    $PF start > "$OUT/start.log" 2>&1
    sleep 2
    SM="sendmail -C $CONF"
    message 101 gone@shop.test "Case study" | $SM -f "$(tok 101)" gone@shop.test
    wait_for 1; keep postfix-550-user-unknown
    message 102 nobody-here@mta.test "Case study" | $SM -f "$(tok 102)" nobody-here@mta.test
    wait_for 1; keep postfix-local-unknown-user
    message 104 full@shop.test "Case study" | $SM -f "$(tok 104)" full@shop.test
    wait_for 1; keep postfix-552-mailbox-full
    message 103 later@slow.test "Case study" | $SM -f "$(tok 103)" later@slow.test
    sleep 5; postqueue -c "$CONF" -f; wait_for 1; keep postfix-delayed
    postsuper -c "$CONF" -d ALL > /dev/null 2>&1 || true
    $PF stop > /dev/null 2>&1 || true
    if [ -n "$INSTALLED" ]; then apt-get purge -y -q postfix > /dev/null 2>&1; fi
    ;;
*)
    echo "usage: $0 postfix" >&2; exit 2 ;;
esac
rm -rf "$OUT"
