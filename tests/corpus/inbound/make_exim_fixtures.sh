#!/bin/sh
# Regenerate the Exim bounce fixtures in this folder (tests/corpus/inbound/exim-*.eml), the
# companions of make_fixtures.sh's Postfix ones.
#
# Run as root on a throwaway Debian machine or container, from the repository root:
#     sh tests/corpus/inbound/make_exim_fixtures.sh
# Debian's exim4 (exim4-daemon-light) must be installed; it conflicts with postfix, so on a
# machine with Postfix: apt-get install exim4-daemon-light, run this, apt-get install postfix.
# Exim runs from its own configuration, spool and log in a temporary folder (-C; /etc/exim4 is
# not read, no daemon, no listener): test mails whose envelope sender is a VERP address (the
# tests' key ring, see mta_helper.py) go to a far side on loopback that refuses one
# (550 5.1.1) and defers the other (451 4.4.1, until Exim sends its delay warning); the reports
# Exim sends back to the VERP address are captured and written here.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
OUT=$(mktemp -d)
chmod 755 "$OUT"
export PYTHONPATH="$ROOT"
EXIM=$(command -v exim4 || command -v exim || true)
if [ -z "$EXIM" ]; then
    echo "no exim4: apt-get install exim4-daemon-light (it replaces postfix)" >&2; exit 2
fi
EXIM_USER=$(getent passwd Debian-exim > /dev/null && echo Debian-exim || echo exim)

. "$HERE/fixture_lib.sh"
MTA_LOGS="$OUT/log"
start_far_side
trap 'kill $HELPER 2>/dev/null || true; rm -rf "$OUT"' EXIT

mkdir -p "$OUT/spool" "$OUT/log"
chown "$EXIM_USER:" "$OUT/spool" "$OUT/log"
CONF="$OUT/exim.conf"
cat > "$CONF" <<CF
primary_hostname = mta.test
qualify_domain = mta.test
domainlist local_domains = mta.test
spool_directory = $OUT/spool
log_file_path = $OUT/log/%slog
exim_user = $EXIM_USER
exim_group = $EXIM_USER
trusted_users = root
daemon_smtp_ports =
host_lookup =
rfc1413_hosts =
# Warn about a deferred message as soon as a queue run finds it older than this.
delay_warning = 5s
timeout_frozen_after = 1h

begin routers
shop:
  driver = manualroute
  domains = shop.test
  route_list = * 127.0.0.1
  self = send
  transport = to_2525
bounces:
  driver = manualroute
  domains = bounce.test
  route_list = * 127.0.0.1
  self = send
  transport = to_2526
slow:
  driver = manualroute
  domains = slow.test
  route_list = * 127.0.0.1
  self = send
  transport = to_2527

begin transports
to_2525:
  driver = smtp
  port = 2525
  allow_localhost
  hosts_avoid_tls = *
to_2526:
  driver = smtp
  port = 2526
  allow_localhost
  hosts_avoid_tls = *
to_2527:
  driver = smtp
  port = 2527
  allow_localhost
  hosts_avoid_tls = *

begin retry
*  *  F,1h,1s
CF

X="$EXIM -C $CONF"
message 111 gone@shop.test "Case study" | $X -odi -f "$(tok 111)" gone@shop.test
wait_for 1; keep exim-550-user-unknown
message 113 later@slow.test "Case study" | $X -odi -f "$(tok 113)" later@slow.test
sleep 7; $X -qff; wait_for 1; keep exim-delayed
$X -bp || true
